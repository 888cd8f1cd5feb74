"""Email addresses: one normalised form, and a translated reason for every refusal."""

from __future__ import annotations

import pytest
from django.utils import translation
from hypothesis import event, given, settings
from hypothesis import strategies as st

from kehu.core.emails import normalise_email
from kehu.core.errors import ValidationFailed


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("zhang.san@example.com", "zhang.san@example.com"),
        ("Zhang.San@Example.COM", "Zhang.San@example.com"),  # the part before @ keeps its case
        ("  li.si@example.cn \n", "li.si@example.cn"),  # spreadsheet cells carry stray spaces
        ("wang＠example.com", "wang@example.com"),  # full-width at sign from a Chinese IME
        ("x@Ｅxample.com", "x@example.com"),
        ("zhang@例子.广告", "zhang@例子.广告"),
        ("zhang@xn--fsqu00a.xn--4rr70v", "zhang@例子.广告"),  # IDNA and Unicode meet in one form
        ("张三@例子.广告", "张三@例子.广告"),
        ("first+tag@sub.example.org", "first+tag@sub.example.org"),
        ("!promo@example.com", "!promo@example.com"),
    ],
)
def test_an_address_is_stored_in_one_normalised_form(raw, normalised):
    assert normalise_email(raw) == normalised


def test_no_dns_lookup_is_made(monkeypatch):
    def refuse_network(*args, **kwargs):
        raise AssertionError("email validation must not touch the network")

    monkeypatch.setattr("socket.getaddrinfo", refuse_network)
    monkeypatch.setattr("socket.gethostbyname", refuse_network)
    assert normalise_email("someone@no-such-domain-for-kehu-tests.example") == (
        "someone@no-such-domain-for-kehu-tests.example"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "Enter an email address."),
        ("   ", "Enter an email address."),
        ("zhang.san.example.com", "An email address needs an @ sign."),
        ("zhang san@example.com", "The part before the @ sign is not valid."),
        ('"quoted"@example.com', "The part before the @ sign is not valid."),
        ("zhang@example", "The domain after the @ sign is not valid."),
        ("zhang@@example.com", "The domain after the @ sign is not valid."),
        ("zhang@exa_mple.com", "The domain after the @ sign is not valid."),
        ("zhang@-example.com", "The domain after the @ sign is not valid."),
        ("zhang@[10.0.0.1]", "The domain after the @ sign is not valid."),
        ("zhang@localhost", "The domain after the @ sign is not valid."),
        ("zhang..san@example.com", "Not a valid email address."),
    ],
)
def test_a_refused_address_names_the_field_and_the_reason(raw, reason):
    with pytest.raises(ValidationFailed) as refused:
        normalise_email(raw, field="emails.1")
    assert refused.value.fields == {"emails.1": [reason]}
    assert refused.value.message == f"Email: {reason}"
    assert refused.value.code == "validation_error"


def test_the_caller_may_name_the_field_for_the_user():
    with pytest.raises(ValidationFailed) as refused:
        normalise_email("nope", label="Billing email")
    assert refused.value.message == "Billing email: An email address needs an @ sign."


def test_the_reason_is_given_in_chinese():
    with translation.override("zh-hans"), pytest.raises(ValidationFailed) as refused:
        normalise_email("zhang.san.example.com")
    assert refused.value.fields == {"email": ["邮箱地址缺少 @ 符号。"]}
    assert refused.value.message == "电子邮箱：邮箱地址缺少 @ 符号。"


def test_the_cache_translates_each_time_it_refuses():
    with translation.override("zh-hans"), pytest.raises(ValidationFailed):
        normalise_email("cached@example")
    with pytest.raises(ValidationFailed) as refused:
        normalise_email("cached@example")
    assert refused.value.fields == {"email": ["The domain after the @ sign is not valid."]}


local_parts = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+", min_size=1, max_size=20
)
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
domains = st.lists(labels, min_size=1, max_size=3).map(".".join).map(lambda name: f"{name}.com")


@given(local_parts, domains, st.booleans())
def test_the_domain_is_lower_cased_and_the_local_part_kept(local_part, domain, shout):
    typed_domain = domain.upper() if shout else domain
    assert normalise_email(f"{local_part}@{typed_domain}") == f"{local_part}@{domain}"


@given(local_parts, domains)
def test_normalising_twice_changes_nothing(local_part, domain):
    once = normalise_email(f"{local_part}@{domain.title()}")
    assert normalise_email(once) == once


@given(st.text(max_size=40))
def test_any_text_is_either_an_address_or_a_validation_error(raw):
    try:
        address = normalise_email(raw)
    except ValidationFailed as error:
        refused = error
    else:
        refused = None
    if refused is not None:
        assert list(refused.fields) == ["email"]
        assert len(refused.fields["email"]) == 1
        return
    assert address.count("@") == 1


# --- the plain-ASCII fast path agrees with email-validator -------------------------------------
_LOCAL_CHARACTERS = "abcXYZ019_+-.!#%&'*/=?^`{|}~\"(),:;<>@[\\] "
_DOMAIN_CHARACTERS = "abcXYZ019-._"
_LABELS = [
    "com",
    "cn",
    "org",
    "local",
    "localhost",
    "test",
    "arpa",
    "invalid",
    "onion",
    "x",
    "中国",
    "xn--fiqs8s",
    "123",
]


@st.composite
def address_like(draw):
    # Half the local parts come from the fast path's own alphabet, so that many addresses are
    # accepted by it and compared; the rest probe its edges.
    alphabet = draw(st.sampled_from([_LOCAL_CHARACTERS, "abcXYZ019_+-."]))
    local = draw(st.text(alphabet=alphabet, min_size=0, max_size=70))
    labels = draw(
        st.lists(
            st.one_of(
                st.text(alphabet="abcXYZ019-", min_size=1, max_size=12),
                st.text(alphabet=_DOMAIN_CHARACTERS, min_size=0, max_size=66),
                st.sampled_from(_LABELS),
            ),
            min_size=0,
            max_size=4,
        )
    )
    top = draw(
        st.one_of(
            st.sampled_from(["com", "cn", "COM", "org", *_LABELS]),
            st.text(alphabet="abcXYZ019-", max_size=64),
        )
    )
    return f"{local}@{'.'.join([*labels, top])}"


def _library_form(text):
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


@settings(max_examples=1000)
@given(address_like())
def test_the_fast_path_accepts_only_what_email_validator_accepts_and_normalises_alike(text):
    from kehu.core.emails import _plain_address

    fast = _plain_address(text)
    event("fast path" if fast is not None else "library")
    if fast is not None:
        assert fast == _library_form(text)


@settings(max_examples=500)
@given(st.from_regex(r"[A-Za-z0-9_+.-]{1,66}@([A-Za-z0-9-]{1,64}\.){1,3}[A-Za-z0-9]{1,64}", fullmatch=True))
def test_near_plain_addresses_agree_with_email_validator(text):
    from kehu.core.emails import _plain_address

    fast = _plain_address(text)
    event("fast path" if fast is not None else "library")
    if fast is not None:
        assert fast == _library_form(text)


@pytest.mark.parametrize(
    "text",
    [
        "zhang.san@example.com",
        "Zhang.San@Example.COM.CN",
        "a+b_c-d@sub-domain.example.org",
        "x" * 64 + "@example.com",
        # Role mailboxes ignore case (RFC 2142); the library lower-cases them, and so must this.
        "WWW@0.AA",
        "PostMaster@Example.com",
    ],
)
def test_common_addresses_take_the_fast_path(text):
    from kehu.core.emails import _plain_address

    assert _plain_address(text) == _library_form(text)
    assert _plain_address(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "a@localhost",
        "a@printer.local",
        "a@xn--fiqs8s.cn",
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example.123",
        "x" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
    ],
)
def test_unusual_addresses_are_left_to_the_library(text):
    from kehu.core.emails import _plain_address

    assert _plain_address(text) is None

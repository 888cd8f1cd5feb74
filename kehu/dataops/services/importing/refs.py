"""Which customer an imported card, order or interaction row belongs to.

A row names its customer by customer code (C000123), by the external id the other system gave
it, or by phone. A phone is normalised as every customer write normalises it and found through
the phone blind index, never by decrypting; a phone two customers share is ambiguous, and the
row is refused with a reason asking for the code instead of being attached to either of them.

Parsing a reference (:func:`parse_customer_ref`) is pure and runs in the import's worker
processes; resolving (:func:`resolve_refs`) runs in the main process, one query per kind of
reference for a whole batch. Error reasons never repeat a phone number or an external id: the
reasons are stored in clear beside the import (kehu.dataops.models), the customer's own columns
are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.core.crypto import blind_index
from kehu.core.errors import DomainError
from kehu.core.phones import normalise_phone
from kehu.core.scopes import scope_filter
from kehu.customers.models import PHONE_INDEX_PURPOSE, Customer, CustomerPhone
from kehu.dataops.services.importing.base import CellError, TargetField
from kehu.dataops.services.importing.rowbulk import (
    chunk_size,
    external_id_rows,
    external_id_sources,
    lookup_rows,
    quoted_table,
)

CODE_PATTERN: Final = re.compile(r"^C[0-9]{6,}$")
_NUMBER_AS_FLOAT: Final = re.compile(r"^\+?[0-9]{7,15}\.0$")
EXTERNAL_ID_MAX: Final = 64

# Target keys of the reference columns; the first non-empty one decides, in this order.
REF_CODE: Final = "customer_code"
REF_EXTERNAL_ID: Final = "customer_external_id"
REF_PHONE: Final = "customer_phone"
REF_ANY: Final = "customer"
REF_KEYS: Final = (REF_CODE, REF_EXTERNAL_ID, REF_PHONE, REF_ANY)


def reference_fields() -> list[TargetField]:
    """The customer-reference target fields every row kind but customers offers."""
    return [
        TargetField(
            REF_CODE,
            gettext_lazy("Customer code"),
            ("客户编号", "客户编码", "客户代码", "会员编号", "customer code", "customer no", "code"),
            help_text=gettext_lazy("C000123"),
        ),
        TargetField(
            REF_EXTERNAL_ID,
            gettext_lazy("Customer external id"),
            (
                "外部编号",
                "外部id",
                "原系统编号",
                "原客户编号",
                "customer external id",
                "external id",
                "customer id",
            ),
        ),
        TargetField(
            REF_PHONE,
            gettext_lazy("Customer phone"),
            (
                "手机",
                "手机号",
                "手机号码",
                "电话",
                "联系电话",
                "客户手机",
                "mobile",
                "phone",
                "customer phone",
            ),
        ),
        TargetField(
            REF_ANY,
            gettext_lazy("Customer (code, external id or phone)"),
            ("客户", "会员", "customer", "member"),
            help_text=gettext_lazy("A customer code, an external id or a phone number."),
        ),
    ]


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """A parsed reference; empty parts do not apply. Hashable: resolutions are keyed by it."""

    code: str = ""
    external_id: str = ""
    phone: str = ""  # E.164
    column_key: str = REF_ANY  # the target key it came from, for the error's column

    @property
    def is_empty(self) -> bool:
        return not (self.code or self.external_id or self.phone)


def parse_customer_ref(text: str, *, column_key: str = REF_ANY) -> CustomerRef:
    """Pure: the reference a cell holds; raises ValueError (translated reason) when it cannot be one.

    A typed column (code, external id, phone) must hold that kind; the generic column may hold
    any of them and is tried as each kind that fits.
    """
    text = text.strip()
    if not text:
        raise ValueError(_("Give the customer's code, external id or phone."))
    code = text.upper()
    if column_key == REF_CODE:
        if not CODE_PATTERN.match(code):
            raise ValueError(_("A customer code is C followed by at least six digits."))
        return CustomerRef(code=code, column_key=column_key)
    if column_key == REF_EXTERNAL_ID:
        if len(text) > EXTERNAL_ID_MAX:
            raise ValueError(_("At most %(count)d characters.") % {"count": EXTERNAL_ID_MAX})
        return CustomerRef(external_id=text, column_key=column_key)
    # Spreadsheets store a phone typed as a number as 13800138000.0.
    phone = _phone_or_empty(text[:-2] if _NUMBER_AS_FLOAT.match(text) else text)
    if column_key == REF_PHONE:
        if not phone:
            raise ValueError(_("Not a valid phone number."))
        return CustomerRef(phone=phone, column_key=column_key)
    return CustomerRef(
        code=code if CODE_PATTERN.match(code) else "",
        external_id=text if len(text) <= EXTERNAL_ID_MAX else "",
        phone=phone,
        column_key=column_key,
    )


def _phone_or_empty(text: str) -> str:
    try:
        return normalise_phone(text).e164
    except DomainError:
        return ""


def ref_from_values(values: dict[str, str]) -> tuple[CustomerRef | None, list[CellError]]:
    """Pure: the row's reference from the first non-empty reference column, or its error."""
    for key in REF_KEYS:
        text = values.get(key, "").strip()
        if not text:
            continue
        try:
            return parse_customer_ref(text, column_key=key), []
        except ValueError as exc:
            return None, [CellError(key, str(exc))]
    return None, [CellError(REF_ANY, _("Give the customer's code, external id or phone."))]


@dataclass
class Resolution:
    """Customer ids by reference; ``ambiguous`` references matched several customers."""

    found: dict[CustomerRef, int] = field(default_factory=dict)
    ambiguous: set[CustomerRef] = field(default_factory=set)

    def error_for(self, ref: CustomerRef) -> CellError | None:
        """None when ``ref`` resolved to exactly one customer; else the row's error."""
        if ref in self.found:
            return None
        if ref in self.ambiguous:
            if ref.phone and not ref.code:
                return CellError(
                    ref.column_key,
                    _("Several customers have this phone number; refer to the customer by code."),
                )
            return CellError(
                ref.column_key, _("Several customers have this external id; refer to the customer by code.")
            )
        if ref.code and ref.column_key == REF_CODE:
            return CellError(ref.column_key, _("No customer has the code %(code)s.") % {"code": ref.code})
        return CellError(ref.column_key, _("No customer matches this reference."))


def _many(pairs: Iterable[tuple[Any, ...]]) -> dict[str, set[int]]:
    matches: dict[str, set[int]] = {}
    for key, customer_id in pairs:
        matches.setdefault(str(key), set()).add(int(customer_id))
    return matches


def _by_code(codes: set[str]) -> dict[str, int]:
    sql = f"SELECT code, id FROM {quoted_table(Customer)} WHERE deleted_at IS NULL AND code IN"  # noqa: S608
    return {str(code): int(pk) for code, pk in lookup_rows(sql, codes)}


def _by_phone(phones: set[str]) -> dict[str, set[int]]:
    digests = {blind_index(phone, purpose=PHONE_INDEX_PURPOSE): phone for phone in phones}
    sql = (
        f"SELECT p.number_index, p.customer_id FROM {quoted_table(CustomerPhone)} p "  # noqa: S608
        f"JOIN {quoted_table(Customer)} c ON c.id = p.customer_id WHERE c.deleted_at IS NULL AND p.number_index IN"
    )
    return {digests[digest]: ids for digest, ids in _many(lookup_rows(sql, digests)).items()}


def _in_scope(actor: Any, customer_ids: set[int]) -> set[int]:
    """The ids among ``customer_ids`` the actor may see as customers (all, for the operator)."""
    if actor is None or not customer_ids:
        return customer_ids
    condition = scope_filter(actor, Customer, "customers")
    if condition is None:
        return set()
    if condition == Q():
        return customer_ids
    visible: set[int] = set()
    ordered = sorted(customer_ids)
    size = chunk_size()
    for start in range(0, len(ordered), size):
        visible.update(
            Customer.objects.filter(condition, pk__in=ordered[start : start + size]).values_list(
                "pk", flat=True
            )
        )
    return visible


def resolve_refs(
    refs: Iterable[CustomerRef], *, actor: Any = None, cache: dict[str, Any] | None = None
) -> Resolution:
    """Customer ids for a batch of references, within ``actor``'s customer scope (None: all).

    A reference is tried as a code, then an external id, then a phone; the first kind that
    matches decides (a code matches at most one customer; the others may match several, which
    makes the reference ambiguous rather than falling through to the next kind). ``cache`` (an
    import's ``context.cache``) keeps what does not change between batches.
    """
    wanted = {ref for ref in refs if not ref.is_empty}
    resolution = Resolution()
    if not wanted:
        return resolution
    codes = _by_code({ref.code for ref in wanted if ref.code})
    external_ids = {ref.external_id for ref in wanted if ref.external_id}
    sources: list[str] | None = None
    if external_ids and cache is not None:
        # One DISTINCT per import, not per batch: the rows being imported add no customers.
        sources = cache.get("customer_external_id_sources")
        if sources is None:
            sources = cache["customer_external_id_sources"] = external_id_sources(Customer)
    external = _many(external_id_rows(Customer, external_ids, sources=sources))
    phones = _by_phone({ref.phone for ref in wanted if ref.phone})
    found_ids = set(codes.values())
    for matches in (external, phones):
        for matched in matches.values():
            found_ids.update(matched)
    # Out of scope is as good as unknown: the reason must not tell that the customer exists.
    visible = _in_scope(actor, found_ids)
    codes = {code: pk for code, pk in codes.items() if pk in visible}
    external = {key: ids & visible for key, ids in external.items()}
    phones = {key: ids & visible for key, ids in phones.items()}
    for ref in wanted:
        if ref.code and ref.code in codes:
            resolution.found[ref] = codes[ref.code]
            continue
        for key, matches in ((ref.external_id, external), (ref.phone, phones)):
            ids = matches.get(key) if key else None
            if not ids:
                continue
            if len(ids) == 1:
                resolution.found[ref] = next(iter(ids))
            else:
                resolution.ambiguous.add(ref)
            break
    return resolution


def resolve_customer_refs(refs: Iterable[str], *, actor: Any = None) -> dict[str, int]:
    """The customer id of every reference text that names exactly one customer.

    References that match nobody or several customers are left out; callers that must say
    which (an import's row errors) use :func:`parse_customer_ref` and :func:`resolve_refs`.
    """
    parsed: dict[str, CustomerRef] = {}
    for text in refs:
        try:
            parsed[text] = parse_customer_ref(text)
        except ValueError:
            continue
    resolution = resolve_refs(parsed.values(), actor=actor)
    return {text: resolution.found[ref] for text, ref in parsed.items() if ref in resolution.found}

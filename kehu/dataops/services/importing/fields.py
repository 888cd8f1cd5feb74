"""Target fields of the customer import, their header synonyms, and automatic mapping.

Headers are compared after ``normalise_header`` (NFKC, lower case, no spaces, punctuation or
"(必填)" marks), so "手机号码*", "手机号码（必填）" and "Mobile Phone" all meet their field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.utils.translation import gettext_lazy as _

from kehu.dataops.services.importing.base import TargetField

# Keys a mapping may give to several columns: their cells are joined, then split into items.
MULTI_VALUED_KEYS = frozenset({"phones", "emails", "tags"})
CUSTOM_FIELD_PREFIX = "custom:"


def customer_fields() -> list[TargetField]:
    """The customer import's fixed fields (custom fields are added from their definitions)."""
    return [
        TargetField(
            "name",
            _("Name"),
            (
                "姓名",
                "客户姓名",
                "客户名称",
                "名字",
                "会员姓名",
                "联系人",
                "name",
                "fullname",
                "customername",
            ),
            required=True,
        ),
        TargetField("gender", _("Gender"), ("性别", "gender", "sex"), help_text=_("男/女, M/F")),
        TargetField(
            "birthday",
            _("Birthday"),
            ("生日", "出生日期", "出生年月日", "出生年月", "birthday", "dateofbirth", "dob", "birthdate"),
            help_text=_("2024-03-01, 2024/3/1, 20240301, 2024年3月1日 or an Excel date"),
        ),
        TargetField(
            "id_number",
            _("ID number"),
            (
                "身份证",
                "身份证号",
                "身份证号码",
                "证件号",
                "证件号码",
                "idnumber",
                "idcard",
                "idcardnumber",
                "id",
            ),
        ),
        TargetField(
            "phones",
            _("Phone"),
            (
                "手机",
                "手机号",
                "手机号码",
                "移动电话",
                "电话",
                "电话号码",
                "联系电话",
                "联系方式",
                "mobile",
                "mobilephone",
                "phone",
                "phonenumber",
                "tel",
                "telephone",
                "cell",
            ),
            help_text=_("Several numbers separated by , ; / or 、"),
        ),
        TargetField(
            "emails", _("Email"), ("邮箱", "电子邮箱", "电子邮件", "邮件", "email", "emailaddress", "mail")
        ),
        TargetField("province", _("Province"), ("省", "省份", "所在省", "province", "state")),
        TargetField("city", _("City"), ("市", "城市", "所在城市", "city")),
        TargetField("district", _("District"), ("区", "区县", "县区", "地区", "district", "county")),
        TargetField(
            "street",
            _("Address"),
            (
                "地址",
                "详细地址",
                "街道",
                "街道地址",
                "联系地址",
                "住址",
                "address",
                "street",
                "streetaddress",
            ),
        ),
        TargetField(
            "postcode", _("Postcode"), ("邮编", "邮政编码", "postcode", "zip", "zipcode", "postalcode")
        ),
        TargetField("tags", _("Tags"), ("标签", "客户标签", "tags", "tag", "labels")),
        TargetField("source", _("Source"), ("来源", "客户来源", "渠道", "source", "channel")),
        TargetField(
            "external_id",
            _("External id"),
            (
                "外部编号",
                "外部id",
                "原系统编号",
                "客户编号",
                "会员编号",
                "externalid",
                "customerid",
                "memberid",
            ),
        ),
        TargetField("notes", _("Notes"), ("备注", "说明", "notes", "note", "remark", "remarks", "comment")),
        TargetField(
            "marketing_consent",
            _("Marketing consent"),
            ("营销同意", "接受营销", "同意营销", "marketingconsent", "consent", "optin"),
            help_text=_("是/否, Y/N, yes/no"),
        ),
        TargetField("status", _("Status"), ("状态", "客户状态", "status")),
    ]


def custom_target_fields(definitions: Iterable[tuple[str, str]]) -> list[TargetField]:
    """Target fields for the active custom field definitions, given as (key, label) pairs."""
    return [TargetField(f"{CUSTOM_FIELD_PREFIX}{key}", label, (label, key)) for key, label in definitions]


def auto_map(headers: Sequence[str], fields: Sequence[TargetField]) -> dict[str, str]:
    """``{"<column index>": "<target key>"}`` for the headers that name a field.

    Exact (normalised) synonym matches only: a wrong guess imports data into the wrong field,
    which is worse than a column the user maps by hand. A single-valued field takes the first
    column that names it; multi-valued ones (phones, emails, tags) take every such column.
    """
    from kehu.dataops.services.values import normalise_header

    by_synonym: dict[str, str] = {}
    for target in fields:
        for synonym in (*target.synonyms, str(target.label), target.key):
            by_synonym.setdefault(normalise_header(synonym), target.key)
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for index, header in enumerate(headers):
        key = by_synonym.get(normalise_header(header))
        if key is None or (key in taken and key not in MULTI_VALUED_KEYS):
            continue
        mapping[str(index)] = key
        taken.add(key)
    return mapping


def mapping_by_header(headers: Sequence[str], mapping: dict[str, str]) -> dict[str, str]:
    """A column-index mapping as ``{normalised header: key}``: what a template stores."""
    from kehu.dataops.services.values import normalise_header

    result: dict[str, str] = {}
    for index, key in mapping.items():
        position = int(index)
        if 0 <= position < len(headers) and key:
            result[normalise_header(headers[position])] = key
    return result


def mapping_from_template(
    headers: Sequence[str], template: dict[str, str], known_keys: set[str]
) -> dict[str, str]:
    """A template's ``{normalised header: key}`` applied to this file's headers."""
    from kehu.dataops.services.values import normalise_header

    mapping: dict[str, str] = {}
    for index, header in enumerate(headers):
        key = template.get(normalise_header(header))
        if key and key in known_keys:
            mapping[str(index)] = key
    return mapping

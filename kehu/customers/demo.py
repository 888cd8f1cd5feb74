"""Realistic demonstration customers, generated fast enough for a million (``kehu demo --customers N``).

Names follow the real surname distribution (王 李 张 刘 陈 … with their shares of the
population, a few compound surnames and the surnames with special readings), given names of one
or two characters from pools that lean male or female. About 60% of customers carry a valid
GB 11643 ID number whose region code matches their address's province and whose birthday and
gender match the record; mobiles use allocated prefixes; landlines use their city's area code.
The same seed and ``now`` give the same customers. Rows go to the database through
kehu.customers.bulk.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import time
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Final

from django.utils import timezone

from kehu.accounts.models import Department, User
from kehu.core import crypto
from kehu.core.idcard import check_character
from kehu.customers.bulk import (
    DEFAULT_BATCH_SIZE,
    AddressRow,
    CustomerBatchPreparer,
    CustomerBulkWriter,
    CustomerRow,
    EmailRow,
    PhoneRow,
    PreparedBatch,
)
from kehu.customers.models import Gender, PhoneKind, Source

# Surnames with their approximate share of the population, per mille (2020 census, rounded).
# The tail includes the compound surnames and the surnames pypinyin misreads by default.
SURNAMES: Final[tuple[tuple[str, float], ...]] = (
    ("王", 74.1), ("李", 72.8), ("张", 68.6), ("刘", 52.8), ("陈", 45.4), ("杨", 33.2),
    ("黄", 24.9), ("赵", 21.4), ("吴", 20.3), ("周", 19.4), ("徐", 15.0), ("孙", 13.8),
    ("马", 13.2), ("朱", 12.6), ("胡", 11.8), ("郭", 11.4), ("何", 11.1), ("林", 10.5),
    ("高", 10.4), ("罗", 10.2), ("郑", 9.6), ("梁", 9.2), ("谢", 7.9), ("宋", 7.5),
    ("唐", 7.3), ("许", 7.0), ("韩", 6.9), ("邓", 6.7), ("冯", 6.6), ("曹", 6.3),
    ("彭", 6.2), ("曾", 6.0), ("肖", 6.0), ("田", 5.5), ("董", 5.4), ("潘", 5.0),
    ("袁", 4.9), ("蔡", 4.8), ("蒋", 4.8), ("余", 4.7), ("于", 4.7), ("杜", 4.5),
    ("叶", 4.5), ("程", 4.4), ("魏", 4.3), ("苏", 4.3), ("吕", 4.3), ("丁", 4.1),
    ("任", 4.1), ("卢", 4.0), ("姚", 3.8), ("沈", 3.8), ("钟", 3.7), ("姜", 3.6),
    ("崔", 3.5), ("谭", 3.4), ("陆", 3.4), ("范", 3.2), ("汪", 3.2), ("廖", 3.1),
    ("石", 3.1), ("金", 3.0), ("韦", 3.0), ("贾", 3.0), ("夏", 2.8), ("付", 2.8),
    ("方", 2.7), ("邹", 2.6), ("熊", 2.6), ("白", 2.6), ("孟", 2.5), ("秦", 2.4),
    ("邱", 2.4), ("侯", 2.3), ("江", 2.3), ("尹", 2.2), ("薛", 2.1), ("闫", 2.1),
    ("段", 2.0), ("雷", 2.0), ("龙", 1.9), ("黎", 1.9), ("史", 1.9), ("陶", 1.8),
    ("贺", 1.8), ("毛", 1.7), ("郝", 1.7), ("顾", 1.7), ("龚", 1.6), ("邵", 1.6),
    ("万", 1.6), ("覃", 1.5), ("武", 1.5), ("钱", 1.5), ("戴", 1.5), ("严", 1.4),
    ("莫", 1.4), ("孔", 1.4), ("向", 1.4), ("常", 1.3), ("翟", 0.8), ("单", 0.6),
    ("解", 0.3), ("仇", 0.3), ("朴", 0.3), ("查", 0.3), ("区", 0.2), ("缪", 0.3),
    ("欧阳", 0.5), ("司马", 0.1), ("上官", 0.1), ("诸葛", 0.1), ("东方", 0.05), ("慕容", 0.03),
)  # fmt: skip

# Characters of given names, in three pools: leaning male, leaning female, and either.
MALE_CHARACTERS: Final = (
    "伟强磊军洋勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林欢阳建国峰亮成志海东晨博文"
)
FEMALE_CHARACTERS: Final = "芳娜敏静丽艳娟霞秀燕玲桂丹萍红梅琳雪婷颖慧莉倩洁琴云兰璐瑶欣怡佳悦思雨蕾薇晶露"
EITHER_CHARACTERS: Final = "子一佳嘉晓小天安乐清如若宏雅心梓泽俊瑞德永春秋家和"


@dataclass(frozen=True, slots=True)
class District:
    province: str
    city: str
    district: str
    region_code: str  # GB/T 2260, the first six digits of a local ID number
    postcode: str
    area_code: str  # landline area code without the leading 0
    landline_digits: int  # length of a local landline number in that city


def _districts(
    province: str, *cities: tuple[str, str, int, tuple[tuple[str, str, str], ...]]
) -> list[District]:
    return [
        District(province, city, district, region, postcode, area, digits)
        for city, area, digits, districts in cities
        for district, region, postcode in districts
    ]


# Province-level divisions with a few cities and districts each, weighted by population (millions).
PROVINCES: Final[tuple[tuple[float, list[District]], ...]] = (
    (21.9, _districts("北京市", ("北京市", "10", 8, (("东城区", "110101", "100010"), ("西城区", "110102", "100032"), ("朝阳区", "110105", "100020"), ("海淀区", "110108", "100080"))))),
    (13.9, _districts("天津市", ("天津市", "22", 8, (("和平区", "120101", "300041"), ("南开区", "120104", "300100"))))),
    (74.6, _districts("河北省", ("石家庄市", "311", 8, (("长安区", "130102", "050011"),)), ("唐山市", "315", 7, (("路北区", "130203", "063000"),)), ("保定市", "312", 7, (("竞秀区", "130602", "071000"),)))),
    (34.9, _districts("山西省", ("太原市", "351", 7, (("小店区", "140105", "030032"),)), ("大同市", "352", 7, (("平城区", "140213", "037000"),)))),
    (24.0, _districts("内蒙古自治区", ("呼和浩特市", "471", 7, (("新城区", "150102", "010050"),)), ("包头市", "472", 7, (("昆都仑区", "150203", "014010"),)))),
    (42.6, _districts("辽宁省", ("沈阳市", "24", 8, (("和平区", "210102", "110001"),)), ("大连市", "411", 8, (("中山区", "210202", "116001"),)))),
    (24.1, _districts("吉林省", ("长春市", "431", 8, (("朝阳区", "220104", "130012"),)), ("吉林市", "432", 8, (("船营区", "220204", "132011"),)))),
    (31.9, _districts("黑龙江省", ("哈尔滨市", "451", 8, (("南岗区", "230103", "150001"),)), ("大庆市", "459", 7, (("萨尔图区", "230602", "163001"),)))),
    (24.9, _districts("上海市", ("上海市", "21", 8, (("黄浦区", "310101", "200001"), ("徐汇区", "310104", "200030"), ("闵行区", "310112", "201100"), ("浦东新区", "310115", "200120"))))),
    (84.7, _districts("江苏省", ("南京市", "25", 8, (("玄武区", "320102", "210018"),)), ("无锡市", "510", 8, (("梁溪区", "320213", "214000"),)), ("苏州市", "512", 8, (("姑苏区", "320508", "215000"),)))),
    (64.6, _districts("浙江省", ("杭州市", "571", 8, (("西湖区", "330106", "310012"),)), ("宁波市", "574", 8, (("鄞州区", "330212", "315100"),)), ("温州市", "577", 8, (("鹿城区", "330302", "325000"),)))),
    (61.0, _districts("安徽省", ("合肥市", "551", 8, (("蜀山区", "340104", "230031"),)), ("芜湖市", "553", 7, (("镜湖区", "340202", "241000"),)))),
    (41.5, _districts("福建省", ("福州市", "591", 8, (("鼓楼区", "350102", "350001"),)), ("厦门市", "592", 7, (("思明区", "350203", "361001"),)))),
    (45.2, _districts("江西省", ("南昌市", "791", 8, (("东湖区", "360102", "330006"),)), ("赣州市", "797", 7, (("章贡区", "360702", "341000"),)))),
    (101.5, _districts("山东省", ("济南市", "531", 8, (("历下区", "370102", "250011"),)), ("青岛市", "532", 8, (("市南区", "370202", "266001"),)))),
    (99.4, _districts("河南省", ("郑州市", "371", 8, (("金水区", "410105", "450003"),)), ("洛阳市", "379", 8, (("西工区", "410303", "471000"),)))),
    (57.8, _districts("湖北省", ("武汉市", "27", 8, (("江岸区", "420102", "430010"), ("洪山区", "420111", "430070"))), ("宜昌市", "717", 7, (("西陵区", "420502", "443000"),)))),
    (66.4, _districts("湖南省", ("长沙市", "731", 8, (("岳麓区", "430104", "410006"),)), ("株洲市", "731", 8, (("天元区", "430211", "412007"),)))),
    (126.0, _districts("广东省", ("广州市", "20", 8, (("越秀区", "440104", "510030"), ("天河区", "440106", "510630"))), ("深圳市", "755", 8, (("福田区", "440304", "518033"), ("南山区", "440305", "518052"))), ("佛山市", "757", 8, (("禅城区", "440604", "528000"),)))),
    (50.1, _districts("广西壮族自治区", ("南宁市", "771", 7, (("青秀区", "450103", "530022"),)), ("桂林市", "773", 7, (("秀峰区", "450302", "541001"),)))),
    (10.1, _districts("海南省", ("海口市", "898", 8, (("龙华区", "460106", "570105"),)), ("三亚市", "898", 8, (("吉阳区", "460203", "572000"),)))),
    (32.1, _districts("重庆市", ("重庆市", "23", 8, (("渝中区", "500103", "400010"), ("江北区", "500105", "400020"))))),
    (83.7, _districts("四川省", ("成都市", "28", 8, (("锦江区", "510104", "610021"), ("武侯区", "510107", "610041"))), ("绵阳市", "816", 7, (("涪城区", "510703", "621000"),)))),
    (38.6, _districts("贵州省", ("贵阳市", "851", 8, (("南明区", "520102", "550001"),)), ("遵义市", "851", 8, (("红花岗区", "520302", "563000"),)))),
    (47.2, _districts("云南省", ("昆明市", "871", 8, (("五华区", "530102", "650021"),)), ("大理白族自治州", "872", 7, (("大理市", "532901", "671000"),)))),
    (3.6, _districts("西藏自治区", ("拉萨市", "891", 7, (("城关区", "540102", "850000"),)))),
    (39.5, _districts("陕西省", ("西安市", "29", 8, (("碑林区", "610103", "710001"), ("雁塔区", "610113", "710061"))), ("宝鸡市", "917", 7, (("渭滨区", "610302", "721000"),)))),
    (25.0, _districts("甘肃省", ("兰州市", "931", 7, (("城关区", "620102", "730030"),)))),
    (5.9, _districts("青海省", ("西宁市", "971", 7, (("城中区", "630103", "810000"),)))),
    (7.2, _districts("宁夏回族自治区", ("银川市", "951", 7, (("兴庆区", "640104", "750001"),)))),
    (25.9, _districts("新疆维吾尔自治区", ("乌鲁木齐市", "991", 7, (("天山区", "650102", "830002"),)))),
)  # fmt: skip

STREET_NAMES: Final = (
    "人民", "解放", "中山", "建设", "和平", "胜利", "长江", "黄河", "文化", "新华",
    "光明", "青年", "朝阳", "东风", "幸福", "学府", "滨江", "湖滨", "科技", "工业",
)  # fmt: skip
STREET_KINDS: Final = ("路", "路", "街", "大道", "巷")

# Prefixes that phonenumbers' CN metadata accepts, weighted towards the big carriers' ranges.
MOBILE_PREFIXES: Final = (
    ("130", 3), ("131", 3), ("132", 3), ("133", 3), ("134", 3), ("135", 5), ("136", 5), ("137", 5),
    ("138", 6), ("139", 6), ("145", 1), ("147", 1), ("150", 3), ("151", 3), ("152", 3), ("153", 2),
    ("155", 2), ("156", 2), ("157", 2), ("158", 4), ("159", 4), ("166", 1), ("170", 1), ("171", 1),
    ("173", 1), ("175", 1), ("176", 1), ("177", 1), ("178", 1), ("180", 3), ("181", 3), ("182", 3),
    ("183", 3), ("184", 1), ("185", 3), ("186", 4), ("187", 3), ("188", 3), ("189", 3), ("191", 1),
    ("198", 2), ("199", 2),
)  # fmt: skip

EMAIL_DOMAINS: Final = (
    ("qq.com", 40), ("163.com", 20), ("126.com", 8), ("foxmail.com", 6), ("sina.com", 4),
    ("outlook.com", 5), ("gmail.com", 5), ("hotmail.com", 2), ("139.com", 3), ("aliyun.com", 2),
)  # fmt: skip

DEMO_TAGS: Final = (
    ("老客户", 20), ("VIP", 8), ("新客户", 15), ("会员", 25), ("高价值", 5), ("潜在客户", 10),
    ("生日关怀", 6), ("推荐人", 4), ("企业客户", 3), ("学生", 5), ("沉睡客户", 7), ("投诉过", 2),
)  # fmt: skip

SOURCES: Final = (
    (Source.WALK_IN, 35), (Source.REFERRAL, 15), (Source.PHONE, 8), (Source.WECHAT, 20),
    (Source.WEBSITE, 8), (Source.EVENT, 6), (Source.PARTNER, 3), (Source.IMPORT, 4), (Source.OTHER, 1),
)  # fmt: skip

EARLIEST_BIRTHDAY: Final = dt.date(1950, 1, 1)
LATEST_BIRTHDAY: Final = dt.date(2008, 12, 31)
CREATED_SPAN: Final = dt.timedelta(days=3 * 365)

ID_NUMBER_SHARE: Final = 0.6
BIRTHDAY_SHARE_WITHOUT_ID: Final = 0.7
SECOND_PHONE_SHARE: Final = 0.2
LANDLINE_SHARE_OF_SECOND: Final = 0.4
EMAIL_SHARE: Final = 0.3
ADDRESS_SHARE: Final = 0.85
OWNED_SHARE: Final = 0.8


class _Weighted:
    """Draws from weighted choices with one random number and a bisection."""

    __slots__ = ("items", "cumulative", "total")

    def __init__(self, pairs: Sequence[tuple[object, float]]) -> None:
        self.items = [item for item, _weight in pairs]
        self.cumulative = list(accumulate(weight for _item, weight in pairs))
        self.total = self.cumulative[-1]

    def draw(self, rng: random.Random) -> object:
        return self.items[bisect(self.cumulative, rng.random() * self.total)]


@dataclass(frozen=True, slots=True)
class Assignee:
    """Whom a demo customer may belong to: an owner (or the pool) and a department."""

    owner_id: int | None
    department_id: int | None


class DemoCustomerGenerator:
    """Yields :class:`CustomerRow` objects; deterministic for a given ``seed`` and ``now``."""

    def __init__(
        self,
        *,
        seed: int = 0,
        now: dt.datetime | None = None,
        assignees: Sequence[Assignee] = (),
        pool_departments: Sequence[int] = (),
    ) -> None:
        self.rng = random.Random(seed)  # noqa: S311 -- demo data, not security
        self.now = now or timezone.now()
        self.assignees = list(assignees)
        self.pool_departments = list(pool_departments)
        self.surnames = _Weighted(SURNAMES)
        self.districts = _Weighted(
            [(district, weight / len(districts)) for weight, districts in PROVINCES for district in districts]
        )
        self.mobile_prefixes = _Weighted(MOBILE_PREFIXES)
        self.email_domains = _Weighted(EMAIL_DOMAINS)
        self.sources = _Weighted(SOURCES)
        self.tags = [name for name, _weight in DEMO_TAGS]
        self.tag_weights = [weight / 100 for _name, weight in DEMO_TAGS]
        self.birthday_days = (LATEST_BIRTHDAY - EARLIEST_BIRTHDAY).days
        self.male_pool = MALE_CHARACTERS + EITHER_CHARACTERS
        self.female_pool = FEMALE_CHARACTERS + EITHER_CHARACTERS
        # Odd and not a multiple of 5: coprime to 10⁸, so the walk is a permutation.
        self.mobile_multiplier = self.rng.randrange(1_000_000, 10_000_000) * 10 + self.rng.choice(
            (1, 3, 7, 9)
        )
        self.mobile_offset = self.rng.randrange(100_000_000)
        self.mobile_counter = 0

    def rows(self, count: int) -> Iterator[CustomerRow]:
        start = self.now - CREATED_SPAN
        step = CREATED_SPAN / max(count, 1)
        for index in range(count):
            # Codes follow creation order, as they do when customers arrive one by one.
            created_at = start + step * index + dt.timedelta(seconds=self.rng.random() * step.total_seconds())
            yield self.row(created_at)

    def _given_name(self, gender: str) -> str:
        rng = self.rng
        pool = self.male_pool if gender == Gender.MALE else self.female_pool
        if rng.random() < 0.25:
            return rng.choice(pool)
        return rng.choice(pool) + rng.choice(pool)

    def _mobile(self) -> str:
        # Distinct numbers within a run (families sharing a phone would make duplicate checks
        # noisy): the last eight digits walk an affine permutation of 0 … 10⁸-1, so no two
        # numbers share them, whatever their prefix, with nothing to remember.
        self.mobile_counter += 1
        subscriber = (self.mobile_counter * self.mobile_multiplier + self.mobile_offset) % 100_000_000
        return f"{self.mobile_prefixes.draw(self.rng)}{subscriber:08d}"

    def _id_number(self, district: District, birthday: dt.date, gender: str) -> str:
        sequence = self.rng.randrange(500) * 2 + (1 if gender == Gender.MALE else 0)
        body = f"{district.region_code}{birthday:%Y%m%d}{sequence:03d}"
        return body + check_character(body)

    def row(self, created_at: dt.datetime) -> CustomerRow:
        rng = self.rng
        gender = Gender.MALE if rng.random() < 0.49 else Gender.FEMALE
        name = str(self.surnames.draw(rng)) + self._given_name(gender)
        district = self.districts.draw(rng)
        assert isinstance(district, District)  # noqa: S101 -- the table holds only districts
        has_id_number = rng.random() < ID_NUMBER_SHARE
        birthday: dt.date | None = None
        if has_id_number or rng.random() < BIRTHDAY_SHARE_WITHOUT_ID:
            birthday = EARLIEST_BIRTHDAY + dt.timedelta(days=rng.randrange(self.birthday_days + 1))
        id_number = self._id_number(district, birthday, gender) if has_id_number and birthday else None
        if id_number is None and rng.random() < 0.08:
            gender = Gender.UNKNOWN  # a form left blank; only records without an ID number
        mobile = self._mobile()
        phones = [PhoneRow(number=f"+86{mobile}", last4=mobile[-4:], kind=PhoneKind.MOBILE)]
        if rng.random() < SECOND_PHONE_SHARE:
            if rng.random() < LANDLINE_SHARE_OF_SECOND:
                digits = district.landline_digits
                local = f"{rng.randrange(2, 9)}{rng.randrange(10 ** (digits - 1)):0{digits - 1}d}"
                phones.append(
                    PhoneRow(
                        number=f"+86{district.area_code}{local}",
                        last4=local[-4:],
                        kind=PhoneKind.LANDLINE,
                        label="家庭",
                    )
                )
            else:
                second = self._mobile()
                phones.append(PhoneRow(number=f"+86{second}", last4=second[-4:], label="工作"))
        emails: tuple[EmailRow, ...] = ()
        if rng.random() < EMAIL_SHARE:
            domain = self.email_domains.draw(rng)
            if domain == "qq.com" and rng.random() < 0.7:
                local_part = str(rng.randrange(10_000_000, 3_000_000_000))
            else:
                local_part = f"{'abcdefghjklmnpqrstwxyz'[rng.randrange(22)]}{rng.randrange(1000, 99_999_999)}"
            emails = (EmailRow(address=f"{local_part}@{domain}"),)
        addresses: tuple[AddressRow, ...] = ()
        if rng.random() < ADDRESS_SHARE:
            street = (
                f"{rng.choice(STREET_NAMES)}{rng.choice(STREET_KINDS)}{rng.randrange(1, 999)}号"
                f"{rng.randrange(1, 30)}栋{rng.randrange(1, 6)}单元{rng.randrange(1, 33)}{rng.randrange(1, 5):02d}室"
            )
            addresses = (
                AddressRow(
                    province=district.province,
                    city=district.city,
                    district=district.district,
                    street=street,
                    postcode=district.postcode,
                ),
            )
        tags = tuple(
            tag for tag, weight in zip(self.tags, self.tag_weights, strict=True) if rng.random() < weight
        )
        owner_id, department_id = self._assignee()
        return CustomerRow(
            name=name,
            gender=gender,
            birthday=birthday,
            id_number=id_number,
            phones=tuple(phones),
            emails=emails,
            addresses=addresses,
            tags=tags,
            owner_id=owner_id,
            department_id=department_id,
            source=str(self.sources.draw(rng)),
            created_at=created_at,
        )

    def _assignee(self) -> tuple[int | None, int | None]:
        rng = self.rng
        if self.assignees and rng.random() < OWNED_SHARE:
            assignee = self.assignees[rng.randrange(len(self.assignees))]
            return assignee.owner_id, assignee.department_id
        if self.pool_departments:
            return None, self.pool_departments[rng.randrange(len(self.pool_departments))]
        return None, None


@dataclass(frozen=True, slots=True)
class DemoCustomersReport:
    count: int
    first_code: str | None
    last_code: str | None
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def demo_assignees() -> tuple[list[Assignee], list[int]]:
    """Active staff with their departments (owners), and every department (for the public pool)."""
    assignees = [
        Assignee(owner_id=user_id, department_id=department_id)
        for user_id, department_id in User.objects.filter(is_active=True)
        .order_by("id")
        .values_list("id", "department_id")
    ]
    departments = list(Department.objects.order_by("id").values_list("id", flat=True))
    return assignees, departments


def demo_customers_create(
    *,
    count: int,
    seed: int = 0,
    now: dt.datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
    parallel: bool = True,
) -> DemoCustomersReport:
    """Create ``count`` demo customers spread over the existing staff and departments.

    With ``parallel`` (and where processes can fork), a child process generates the rows and
    computes their stored form (pinyin, ciphertexts, blind indexes: half the work) while this
    one writes the previous batch, so both cores of a small machine are busy.
    """
    assignees, departments = demo_assignees()
    generator = DemoCustomerGenerator(seed=seed, now=now, assignees=assignees, pool_departments=departments)
    writer = CustomerBulkWriter()
    started = time.monotonic()
    first_code: str | None = None
    last_code: str | None = None
    done = 0
    batches = (
        _prepared_in_child(generator, writer.preparer, count, batch_size)
        if parallel and "fork" in multiprocessing.get_all_start_methods()
        else (writer.preparer.prepare(batch) for batch in _batches(generator.rows(count), batch_size))
    )
    with writer.large_page_cache():
        for batch in batches:
            written = writer.write_prepared(batch)
            first_code = first_code or written[0]
            last_code = written[-1]
            done += len(written)
            if on_progress is not None:
                on_progress(done)
    writer.refresh_statistics(done)
    return DemoCustomersReport(
        count=done,
        first_code=first_code,
        last_code=last_code,
        seconds=time.monotonic() - started,
    )


def _batches(rows: Iterator[CustomerRow], size: int) -> Iterator[list[CustomerRow]]:
    while batch := list(islice(rows, size)):
        yield batch


_END: Final = "end"


def _prepared_in_child(
    generator: DemoCustomerGenerator, preparer: CustomerBatchPreparer, count: int, batch_size: int
) -> Iterator[PreparedBatch]:
    """Prepared batches from a forked child process, a few batches ahead of the writer.

    The child touches no database connection (it inherits them, but only generates and
    encrypts), and the keyring is loaded before the fork so that it is not created twice.
    """
    crypto.load_keyring()
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[PreparedBatch | str] = context.Queue(maxsize=3)

    def produce() -> None:
        try:
            for batch in _batches(generator.rows(count), batch_size):
                queue.put(preparer.prepare(batch))
            queue.put(_END)
        except BaseException as error:  # noqa: BLE001 -- reported to the parent, which raises it
            queue.put(f"{type(error).__name__}: {error}")

    child = context.Process(target=produce, name="kehu-demo-customers", daemon=True)
    child.start()
    try:
        while True:
            item = queue.get()
            if isinstance(item, str):
                if item != _END:
                    raise RuntimeError(f"generating demo customers failed: {item}")
                break
            yield item
    finally:
        if child.is_alive():
            child.terminate()
        child.join()

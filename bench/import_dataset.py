"""A customer CSV as another system exports it, for the import benchmark and tests.

Chinese headers, valid Chinese mobiles and ID numbers (with check digits), emails on about a
third of the rows, addresses, tags; deterministic for a seed; every phone, email and ID number
unique so that the rows are all new customers (no row matches another). Written streaming.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from kehu.core.idcard import check_character

HEADERS = [
    "姓名",
    "性别",
    "手机号",
    "邮箱",
    "身份证号",
    "生日",
    "省份",
    "城市",
    "区县",
    "地址",
    "标签",
    "备注",
]
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉建国志刚文"
PLACES = [
    ("310000", "上海市", "上海市", "浦东新区", "310115"),
    ("330000", "浙江省", "杭州市", "西湖区", "330106"),
    ("110000", "北京市", "北京市", "朝阳区", "110105"),
    ("440000", "广东省", "深圳市", "南山区", "440305"),
    ("510000", "四川省", "成都市", "武侯区", "510107"),
]
TAGS = ["VIP", "老客户", "新客", "团购", "推荐", ""]
PREFIXES = ["138", "139", "150", "151", "158", "186", "187", "135", "136", "177"]


def id_number(area: str, birthday: str, serial: int, gender: str) -> str:
    sequence = serial % 500 * 2 + (1 if gender == "男" else 0)
    body = f"{area}{birthday}{sequence:03d}"[:17]
    return body + check_character(body)


def write_customers_csv(path: Path, rows: int, *, seed: int = 7, encoding: str = "utf-8-sig") -> Path:
    rng = random.Random(seed)
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADERS)
        for number in range(rows):
            gender = "男" if rng.random() < 0.5 else "女"
            name = (
                rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
            )
            _province_code, province, city, district, area = rng.choice(PLACES)
            year = 1950 + number % 55
            birthday = f"{year}{1 + number % 12:02d}{1 + number % 28:02d}"
            # Unique per row: the row number is spread over the last 8 digits.
            phone = f"{PREFIXES[number % len(PREFIXES)]}{(number * 7919) % 100_000_000:08d}"
            # The birthday repeats every lcm(55, 12, 28) = 4,620 rows; the serial changes then,
            # so ID numbers stay unique up to 4,620 x 500 rows.
            id_no = id_number(area, birthday, number // 4620, gender) if number < 2_310_000 else ""
            email = f"user{number}@example.com" if number % 3 == 0 else ""
            writer.writerow(
                [
                    name,
                    gender,
                    phone,
                    email,
                    id_no,
                    f"{birthday[:4]}-{birthday[4:6]}-{birthday[6:]}",
                    province,
                    city,
                    district,
                    f"{rng.randint(1, 999)}号{rng.randint(1, 30)}栋",
                    rng.choice(TAGS),
                    "",
                ]
            )
    return path

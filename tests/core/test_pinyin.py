"""Name pinyin: surname readings, compound surnames, mixed names, search keys and caching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypinyin import Style, lazy_pinyin, pinyin
from pypinyin.pinyin_dict import pinyin_dict

from kehu.core.pinyin import (
    COMPOUND_SURNAME_READINGS,
    SURNAME_READINGS,
    NamePinyin,
    name_pinyin,
    search_keys,
)

# The issue's examples, each as a surname followed by a given name with a plain reading.
ISSUE_SURNAMES = [
    ("单", "shan"),
    ("曾", "zeng"),
    ("解", "xie"),
    ("仇", "qiu"),
    ("朴", "piao"),
    ("查", "zha"),
    ("区", "ou"),
]


def test_plain_name():
    assert name_pinyin("张三") == NamePinyin(
        full="zhangsan", initials="zs", syllables=("zhang", "san"), surname_syllables=1
    )


@pytest.mark.parametrize(("surname", "reading"), ISSUE_SURNAMES)
def test_issue_surnames_read_as_surnames(surname, reading):
    result = name_pinyin(surname + "明")
    assert result.syllables == (reading, "ming")
    assert result.full == reading + "ming"
    assert result.initials == reading[0] + "m"


@pytest.mark.parametrize(
    ("name", "full", "initials"),
    [
        ("单田芳", "shantianfang", "stf"),
        ("曾国藩", "zengguofan", "zgf"),
        ("解缙", "xiejin", "xj"),
        ("仇英", "qiuying", "qy"),
        ("朴树", "piaoshu", "ps"),
        ("查良镛", "zhaliangyong", "zly"),
        ("区永", "ouyong", "oy"),
        ("盖聂", "genie", "gn"),
        ("缪斯", "miaosi", "ms"),
        ("翟天临", "zhaitianlin", "ztl"),
        ("覃海", "qinhai", "qh"),
        ("乐嘉", "yuejia", "yj"),
        ("秘书", "bishu", "bs"),
        ("种师道", "chongshidao", "csd"),
        ("员华", "yunhua", "yh"),
        ("召南", "shaonan", "sn"),
        ("繁钦", "poqin", "pq"),
        ("宓妃", "mifei", "mf"),
        ("能静", "naijing", "nj"),
        ("长乐", "changle", "cl"),
    ],
)
def test_polyphonic_surnames(name, full, initials):
    result = name_pinyin(name)
    assert (result.full, result.initials, result.surname_syllables) == (full, initials, 1)


def test_surname_table_uses_real_readings_of_each_character():
    # A typo in the table would silently mis-index every customer with that surname.
    for surname, reading in SURNAME_READINGS.items():
        readings = {entry for entry in pinyin(surname, style=Style.NORMAL, heteronym=True)[0]}
        assert reading in readings, surname


def test_surname_table_only_holds_surnames_pypinyin_reads_otherwise():
    for surname, reading in SURNAME_READINGS.items():
        assert lazy_pinyin(surname) != [reading], surname


@pytest.mark.parametrize(
    ("name", "full", "initials"),
    [
        ("欧阳修", "ouyangxiu", "oyx"),
        ("司马迁", "simaqian", "smq"),
        ("上官婉儿", "shangguanwaner", "sgwe"),
        ("诸葛亮", "zhugeliang", "zgl"),
        ("东方朔", "dongfangshuo", "dfs"),
        ("皇甫嵩", "huangfusong", "hfs"),
        ("尉迟恭", "yuchigong", "ycg"),
        ("公孙策", "gongsunce", "gsc"),
        ("慕容复", "murongfu", "mrf"),
        ("长孙无忌", "zhangsunwuji", "zswj"),
        ("宇文泰", "yuwentai", "ywt"),
        ("司徒雷", "situlei", "stl"),
        ("令狐冲", "linghuchong", "lhc"),
        ("夏侯惇", "xiahoudun", "xhd"),
        ("轩辕敬", "xuanyuanjing", "xyj"),
        ("万俟卨", "moqixie", "mqx"),
        ("端木蓉", "duanmurong", "dmr"),
        ("独孤求败", "duguqiubai", "dgqb"),
        ("南宫明", "nangongming", "ngm"),
        ("西门庆", "ximenqing", "xmq"),
        ("澹台明", "tantaiming", "ttm"),
    ],
)
def test_compound_surnames(name, full, initials):
    result = name_pinyin(name)
    assert (result.full, result.initials, result.surname_syllables) == (full, initials, 2)


def test_compound_surname_table_uses_real_readings():
    for surname, readings in COMPOUND_SURNAME_READINGS.items():
        assert len(surname) == 2
        for character, reading in zip(surname, readings, strict=True):
            choices = set(pinyin(character, style=Style.NORMAL, heteronym=True)[0])
            assert reading in choices, surname


def test_compound_surname_alone():
    assert name_pinyin("欧阳") == NamePinyin("ouyang", "oy", ("ou", "yang"), 2)


def test_shan_yu_is_read_as_the_surname_shan():
    # 单于 as a compound surname is rare; 单 (shan) with a given name 于… is the usual reading.
    assert name_pinyin("单于飞").full == "shanyufei"


def test_surname_is_only_read_at_the_start():
    # 曾 inside a given name keeps pypinyin's ordinary reading.
    assert name_pinyin("王曾").syllables == ("wang", "ceng")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("David 王", NamePinyin("davidwang", "dw", ("david", "wang"), 0)),
        ("José 曾", NamePinyin("josezeng", "jz", ("jose", "zeng"), 0)),
        ("王 David", NamePinyin("wangdavid", "wd", ("wang", "david"), 1)),
        ("ＡＢＣ李", NamePinyin("abcli", "al", ("abc", "li"), 0)),
        ("王小明2号", NamePinyin("wangxiaoming2hao", "wxm2h", ("wang", "xiao", "ming", "2", "hao"), 1)),
        ("（曾）小贤", NamePinyin("zengxiaoxian", "zxx", ("zeng", "xiao", "xian"), 1)),
        (" 张 三 ", NamePinyin("zhangsan", "zs", ("zhang", "san"), 1)),
        ("Mary-Jane O'Neil", NamePinyin("maryjaneoneil", "mjon", ("mary", "jane", "o", "neil"), 0)),
        ("吕布", NamePinyin("lvbu", "lb", ("lv", "bu"), 1)),
    ],
)
def test_mixed_names(name, expected):
    assert name_pinyin(name) == expected


@pytest.mark.parametrize(
    ("name", "syllables"),
    [
        ("阿依古丽·买买提", ("a", "yi", "gu", "li", "mai", "mai", "ti")),
        # 查 in a transliteration is "cha", not the surname reading "zha".
        ("查尔斯・狄更斯", ("cha", "er", "si", "di", "geng", "si")),
        ("约翰•史密斯", ("yue", "han", "shi", "mi", "si")),
    ],
)
def test_middle_dot_names_have_no_chinese_surname(name, syllables):
    result = name_pinyin(name)
    assert result.syllables == syllables
    assert result.surname_syllables == 0


@pytest.mark.parametrize("name", ["", "   ", "·", "——", "!?"])
def test_names_without_letters_are_empty(name):
    assert name_pinyin(name) == NamePinyin("", "", (), 0)
    assert search_keys(name) == set()


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("张三", {"zhangsan", "zs", "zhangs"}),
        ("欧阳修锋", {"ouyangxiufeng", "oyxf", "ouyangxf"}),
        ("单田芳", {"shantianfang", "stf", "shantf"}),
        ("欧阳", {"ouyang", "oy"}),
        ("David 王", {"davidwang", "dw"}),
        ("吕布", {"lvbu", "lb", "lvb", "lubu", "lub"}),
        # Latin words keep their v; only the ü syllable gets a second spelling.
        ("Calvin 吕", {"calvinlv", "calvinlu", "cl"}),
        ("女娲", {"nvwa", "nuwa", "nw", "nvw", "nuw"}),
    ],
)
def test_search_keys(name, keys):
    assert search_keys(name) == keys


def test_a_clerk_finds_zhang_san_by_pinyin_or_initials():
    keys = search_keys("张三")
    assert "zhangsan" in keys
    assert "zs" in keys


han_characters = st.sampled_from(sorted(chr(code) for code in pinyin_dict if 0x4E00 <= code <= 0x9FFF))
latin_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1)
name_parts = st.lists(
    st.one_of(han_characters, latin_words, st.sampled_from([" ", "·", "-", "，"])), max_size=8
)


@given(name_parts)
def test_initials_are_the_first_letters_of_the_syllables(parts):
    result = name_pinyin("".join(parts))
    assert result.initials == "".join(syllable[0] for syllable in result.syllables)
    assert result.full == "".join(result.syllables)
    assert result.full == result.full.lower()
    assert all(syllable.isalnum() and syllable.isascii() for syllable in result.syllables)
    assert 0 <= result.surname_syllables <= min(2, len(result.syllables))


@given(name_parts)
def test_search_keys_always_hold_full_and_initials(parts):
    name = "".join(parts)
    result = name_pinyin(name)
    keys = search_keys(name)
    if result.syllables:
        assert {result.full, result.initials} <= keys
    else:
        assert keys == set()


@given(st.lists(han_characters, min_size=1, max_size=4))
def test_given_names_read_as_pypinyin_reads_them(characters):
    # The caches must not change what pypinyin says about the given name.
    given_name = "".join(characters)
    assert name_pinyin("王" + given_name).syllables[1:] == tuple(lazy_pinyin(given_name))


@given(st.lists(han_characters, min_size=1, max_size=4))
def test_han_only_names_read_the_same_with_spaces_around(characters):
    # A name of Han characters only takes a shorter path than a mixed one; both must agree.
    name = "".join(characters)
    assert name_pinyin(name) == name_pinyin(f" {name}\t")
    assert name_pinyin(name) == name_pinyin(f"{name}!")


def test_word_in_given_name_takes_the_word_reading():
    # 朝阳 is a word to pypinyin ("zhaoyang"); a three-character given name is segmented.
    assert name_pinyin("张朝阳").syllables == ("zhang", "zhao", "yang")
    assert name_pinyin("李长江水").syllables == ("li", *lazy_pinyin("长江水"))

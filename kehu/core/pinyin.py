"""Pinyin and initials for customer names, as the search index stores them.

A clerk finds 张三 by typing "张三", "zhangsan" or "zs", so every customer record keeps its
name's pinyin and initials. They are computed when the record is written, never per query.

Rules:

- The surname is read as a surname: 单 is "shan", 曾 "zeng", 解 "xie", 仇 "qiu" and so on
  (pypinyin reads characters by their most common reading, which for these is wrong), and a
  compound surname at the start of the name (欧阳, 司马, 尉迟 "yuchi") is recognised as one.
- The rest of the name is read by pypinyin: a two-character given name that pypinyin knows
  as a word takes that word's reading, otherwise each character takes its default reading.
- No tones, lower case, no spaces; ü is written "v" (吕 "lv"), as pinyin input methods type it.
- Latin letters and digits are kept (accents dropped, lower-cased): "David 王" reads
  "davidwang", and its first Han word is still read as a surname ("José 曾" is "josezeng").
  Letters of other scripts (Cyrillic, kana) are kept lower-cased as they are.
  Punctuation and spaces only separate words; a middle dot (·) marks a transliterated name
  such as 阿依古丽·买买提 or 查尔斯·狄更斯, which has no Chinese surname (查 stays "cha").

Speed: pypinyin costs about 36 µs per name. Readings are cached per character and per
multi-character word, so a name made of characters already seen costs about 4 µs (measured
over a million generated names on the 2-core machine; about 10 µs while the caches fill).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, NamedTuple


class _Pypinyin(NamedTuple):
    characters: Mapping[int, str]
    words: Mapping[str, Any]
    read: Callable[[str], list[str]]


@cache
def _pypinyin() -> _Pypinyin:
    """pypinyin, imported on first use: its word list holds about 55 MB, which a process that
    never reads a name need not carry (the import's writing process, whose memory is budgeted,
    leaves the names to its workers)."""
    from pypinyin import Style, lazy_pinyin
    from pypinyin.phrases_dict import phrases_dict
    from pypinyin.pinyin_dict import pinyin_dict

    def read(text: str) -> list[str]:
        readings: list[str] = lazy_pinyin(text, style=Style.NORMAL)
        return readings

    return _Pypinyin(characters=pinyin_dict, words=phrases_dict, read=read)


# Single-character surnames whose surname reading is not pypinyin's default reading.
# Characters whose default reading already is the surname reading (张, 王, 冯 ...) need no entry.
SURNAME_READINGS: dict[str, str] = {
    "单": "shan",
    "曾": "zeng",
    "解": "xie",
    "仇": "qiu",
    "朴": "piao",
    "查": "zha",
    "区": "ou",
    "盖": "ge",
    "缪": "miao",
    "翟": "zhai",
    "覃": "qin",
    "乐": "yue",
    "秘": "bi",
    "种": "chong",
    "员": "yun",
    "召": "shao",
    "繁": "po",
    "能": "nai",
    "长": "chang",
    "重": "chong",
    "句": "gou",
    "折": "she",
    "洗": "xian",
    "祭": "zhai",
    "隗": "wei",
    "佴": "nai",
    "藏": "zang",
    "阚": "kan",
}

# Compound (two-character) surnames, recognised only at the start of a name. 单于 is left out on
# purpose: a name starting 单于 is far more often the surname 单 (shan) with a given name 于…
COMPOUND_SURNAME_READINGS: dict[str, tuple[str, str]] = {
    "欧阳": ("ou", "yang"),
    "司马": ("si", "ma"),
    "上官": ("shang", "guan"),
    "诸葛": ("zhu", "ge"),
    "东方": ("dong", "fang"),
    "皇甫": ("huang", "fu"),
    "尉迟": ("yu", "chi"),
    "公孙": ("gong", "sun"),
    "慕容": ("mu", "rong"),
    "长孙": ("zhang", "sun"),
    "宇文": ("yu", "wen"),
    "司徒": ("si", "tu"),
    "司空": ("si", "kong"),
    "令狐": ("ling", "hu"),
    "夏侯": ("xia", "hou"),
    "轩辕": ("xuan", "yuan"),
    "万俟": ("mo", "qi"),
    "端木": ("duan", "mu"),
    "独孤": ("du", "gu"),
    "南宫": ("nan", "gong"),
    "西门": ("xi", "men"),
    "东郭": ("dong", "guo"),
    "澹台": ("tan", "tai"),
    "公冶": ("gong", "ye"),
    "宗政": ("zong", "zheng"),
    "濮阳": ("pu", "yang"),
    "淳于": ("chun", "yu"),
    "太叔": ("tai", "shu"),
    "申屠": ("shen", "tu"),
    "公羊": ("gong", "yang"),
    "闻人": ("wen", "ren"),
    "呼延": ("hu", "yan"),
    "拓跋": ("tuo", "ba"),
    "百里": ("bai", "li"),
    "钟离": ("zhong", "li"),
    "鲜于": ("xian", "yu"),
    "闾丘": ("lv", "qiu"),
    "赫连": ("he", "lian"),
    "乐正": ("yue", "zheng"),
    "子车": ("zi", "ju"),
    "亓官": ("qi", "guan"),
    "司寇": ("si", "kou"),
    "巫马": ("wu", "ma"),
    "公西": ("gong", "xi"),
    "漆雕": ("qi", "diao"),
    "壤驷": ("rang", "si"),
    "公良": ("gong", "liang"),
    "谷梁": ("gu", "liang"),
    "梁丘": ("liang", "qiu"),
    "左丘": ("zuo", "qiu"),
    "第五": ("di", "wu"),
    "羊舌": ("yang", "she"),
    "微生": ("wei", "sheng"),
    "段干": ("duan", "gan"),
}

# Separators that mark a transliterated name: the middle dot in its common encodings.
MIDDLE_DOTS = frozenset("·•‧・･")


@dataclass(frozen=True, slots=True)
class NamePinyin:
    """The pinyin of a name: ``full`` "zhangsan", ``initials`` "zs", ``syllables`` ("zhang", "san").

    A Latin or digit word counts as one syllable ("David 王" → ("david", "wang"), initials
    "dw"). ``surname_syllables`` is how many leading syllables are the surname: 1 for 张三,
    2 for 欧阳修, 0 when the name does not start with a Chinese surname ("David 王",
    a transliterated name).
    """

    full: str
    initials: str
    syllables: tuple[str, ...]
    surname_syllables: int = 0


def _is_han(character: str) -> bool:
    return ord(character) in _pypinyin().characters


@cache
def _character_reading(character: str) -> str:
    # Bounded in practice: about 20k Han characters have a reading.
    return _pypinyin().read(character)[0]


# Bounded, unlike the character cache: runs of characters come from user input without limit.
@lru_cache(maxsize=65536)
def _word_readings(word: str) -> tuple[str, ...]:
    return tuple(_pypinyin().read(word))


def _han_run_readings(run: str) -> tuple[str, ...]:
    """Read a run of Han characters the way pypinyin would, from caches where possible.

    For one or two characters pypinyin either finds the run in its word list or reads each
    character alone; those cases are answered from the caches. Longer runs (rare in names)
    go through pypinyin's word segmentation once and are cached whole.
    """
    if len(run) == 1:
        return (_character_reading(run),)
    if len(run) == 2 and run not in _pypinyin().words:
        return (_character_reading(run[0]), _character_reading(run[1]))
    return _word_readings(run)


@lru_cache(maxsize=4096)
def _latin_folded(character: str) -> str:
    """A non-Han character as the letters and digits it contributes ("É" → "e", "，" → "")."""
    decomposed = unicodedata.normalize("NFKD", character)
    return "".join(part for part in decomposed if part.isalnum()).lower()


def _words(name: str) -> list[tuple[bool, str]]:
    """Split a name into (is_han, text) words: runs of Han characters and runs of letters/digits."""
    words: list[tuple[bool, str]] = []
    current: list[str] = []
    current_is_han = False
    for character in name:
        if _is_han(character):
            is_han, text = True, character
        else:
            is_han, text = False, _latin_folded(character)
            if not text:
                # A space or punctuation ends the word without adding anything.
                if current:
                    words.append((current_is_han, "".join(current)))
                    current = []
                continue
        if current and is_han != current_is_han:
            words.append((current_is_han, "".join(current)))
            current = []
        current_is_han = is_han
        current.append(text)
    if current:
        words.append((current_is_han, "".join(current)))
    return words


def _surname_split(first_run: str) -> tuple[tuple[str, ...], str]:
    """Take the surname off the front of a name's first Han run: (surname syllables, rest)."""
    if len(first_run) >= 2 and (compound := COMPOUND_SURNAME_READINGS.get(first_run[:2])):
        return compound, first_run[2:]
    surname = first_run[0]
    reading = SURNAME_READINGS.get(surname) or _character_reading(surname)
    return (reading,), first_run[1:]


def name_pinyin(name: str) -> NamePinyin:
    """The pinyin, initials and syllables of a customer's name, by the rules in the module docstring."""
    # Whole names are not cached: most names in a large list are distinct, and a cache miss
    # costs more than the per-character caches below save.
    stripped = name.strip()
    if stripped and all(map(_pypinyin().characters.__contains__, map(ord, stripped))):
        # The usual case, a name of Han characters only, skips the word splitting.
        surname, given_name = _surname_split(stripped)
        syllables = surname + _han_run_readings(given_name) if given_name else surname
        return _name_reading(syllables, len(surname))
    return _mixed_name_pinyin(stripped)


def _mixed_name_pinyin(stripped: str) -> NamePinyin:
    syllables: list[str] = []
    surname_syllables = 0
    # A transliterated name (阿依古丽·买买提) has no Chinese surname to read specially.
    expects_surname = not any(character in MIDDLE_DOTS for character in stripped)
    for is_han, text in _words(stripped):
        if not is_han:
            syllables.append(text)
            continue
        if expects_surname:
            # The first Han word holds the surname, also after a Latin given name ("David 王").
            expects_surname = False
            surname, text = _surname_split(text)
            if not syllables:
                surname_syllables = len(surname)
            syllables.extend(surname)
            if not text:
                continue
        syllables.extend(_han_run_readings(text))
    return _name_reading(tuple(syllables), surname_syllables)


def _name_reading(syllables: tuple[str, ...], surname_syllables: int) -> NamePinyin:
    return NamePinyin(
        full="".join(syllables),
        initials="".join([syllable[0] for syllable in syllables]),
        syllables=syllables,
        surname_syllables=surname_syllables,
    )


def search_keys(name: str) -> set[str]:
    """The pinyin strings a search index should hold so that a clerk can find this name.

    For 欧阳修锋 that is:

    - the full pinyin, "ouyangxiufeng";
    - the initials, one letter per syllable, "oyxf" (so a compound surname gives two letters);
    - the surname in full followed by the given name's initials, "ouyangxf", the way clerks
      often type ("zhangs" for 张三);
    - for names with ü, each of these also with "u" for "v" (吕 is typed "lv" or "lu").

    The Han name itself is indexed separately, so it is not repeated here. A name without
    letters (empty, or only punctuation) has no keys.
    """
    return reading_search_keys(name_pinyin(name))


def reading_search_keys(reading: NamePinyin) -> set[str]:
    """:func:`search_keys` for a name whose reading the caller already has (bulk writes)."""
    keys = _keys_for(reading.syllables, reading.surname_syllables)
    if "v" in reading.full:
        with_u = tuple(_U_FOR_V.get(syllable, syllable) for syllable in reading.syllables)
        if with_u != reading.syllables:
            keys |= _keys_for(with_u, reading.surname_syllables)
    return keys


# pypinyin writes ü as v only after l and n (ju, qu, xu, yu are already spelled with u), so
# these are the only syllables with a second common spelling. Latin words keep their own v.
_U_FOR_V = {"lv": "lu", "lve": "lue", "nv": "nu", "nve": "nue"}


def _keys_for(syllables: tuple[str, ...], surname_count: int) -> set[str]:
    if not syllables:
        return set()
    initials = "".join(syllable[0] for syllable in syllables)
    keys = {"".join(syllables), initials}
    if 0 < surname_count < len(syllables):
        keys.add("".join(syllables[:surname_count]) + initials[surname_count:])
    return keys

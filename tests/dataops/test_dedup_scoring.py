"""Scoring rules for duplicate pairs, without a database: evidence for, evidence against, reasons."""

from __future__ import annotations

import datetime as dt

from kehu.core.pinyin import name_pinyin
from kehu.dataops.services.dedup.evaluation import evaluate, true_pairs
from kehu.dataops.services.dedup.scan import DEDUP_THRESHOLD
from kehu.dataops.services.dedup.scoring import Profile, reason_text, score_pair
from kehu.dataops.services.dedup.text import normalise_name, normalise_street, simplified


def profile(name: str, number: int = 1, **fields: object) -> Profile:
    values: dict[str, object] = {"name": normalise_name(name), "pinyin": name_pinyin(name).full, **fields}
    for key in ("phones", "emails", "places", "streets"):
        if key in values:
            values[key] = frozenset(values[key])  # type: ignore[arg-type]
    return Profile(id=number, **values)  # type: ignore[arg-type]


def codes(result: object) -> list[str]:
    return [reason.code for reason in result.reasons]  # type: ignore[attr-defined]


def test_same_name_and_phone_is_a_candidate_with_both_reasons() -> None:
    result = score_pair(profile("张伟", phones={"p1"}), profile("张伟", 2, phones={"p1"}))
    assert result.score >= DEDUP_THRESHOLD
    assert set(codes(result)) == {"same_phone", "same_name"}
    assert result.conflicts == ()


def test_namesakes_in_the_same_city_stay_below_the_threshold() -> None:
    place = {("北京市", "北京市", "朝阳区")}
    result = score_pair(profile("王伟", places=place), profile("王伟", 2, places=place))
    assert result.score < DEDUP_THRESHOLD


def test_different_id_numbers_are_a_conflict_that_outweighs_a_shared_phone() -> None:
    result = score_pair(
        profile("李娜", phones={"p"}, id_number_index="a"),
        profile("李娜", 2, phones={"p"}, id_number_index="b"),
    )
    assert result.conflicts == ("id_number",)
    assert result.score < DEDUP_THRESHOLD


def test_different_birthdays_and_genders_count_against() -> None:
    result = score_pair(
        profile("刘洋", phones={"p"}, birthday=dt.date(1990, 1, 1), gender="male"),
        profile("刘洋", 2, phones={"p"}, birthday=dt.date(1985, 6, 1), gender="female"),
    )
    assert set(result.conflicts) == {"birthday", "gender"}
    assert result.score < DEDUP_THRESHOLD


def test_traditional_characters_are_the_same_name() -> None:
    assert simplified("張偉") == "张伟"
    birthday = dt.date(1988, 3, 4)
    result = score_pair(profile("張偉", birthday=birthday), profile("张伟", 2, birthday=birthday))
    assert "same_name" in codes(result)
    assert result.score >= DEDUP_THRESHOLD


def test_a_name_written_in_pinyin_matches_by_pinyin() -> None:
    result = score_pair(profile("Zhang Wei", emails={"e"}), profile("张伟", 2, emails={"e"}))
    assert "same_pinyin" in codes(result)
    assert result.score >= DEDUP_THRESHOLD


def test_a_homophone_typo_matches_by_pinyin_and_swapped_characters_are_recognised() -> None:
    assert "same_pinyin" in codes(score_pair(profile("王建伟"), profile("王建玮", 2)))
    assert "reordered_name" in codes(score_pair(profile("王建国"), profile("王国建", 2)))


def test_unrelated_names_sharing_a_phone_are_not_duplicates() -> None:
    result = score_pair(profile("张伟", phones={"p"}), profile("李秀英", 2, phones={"p"}))
    assert "different_name" in codes(result)
    assert result.score < 0.5


def test_same_street_written_differently_is_the_same_address() -> None:
    assert normalise_street("人民路１２３号4幢2單元1203室") == normalise_street("人民路123号 4栋 2单元 1203")
    assert normalise_street("中山一路") == normalise_street("中山1路")
    result = score_pair(profile("陈静", streets={"s"}), profile("陈静", 2, streets={"s"}))
    assert "same_address" in codes(result)
    assert result.score >= DEDUP_THRESHOLD


def test_reason_texts_fill_in_their_parameters() -> None:
    assert "83" in reason_text("similar_name", {"similarity": 83})
    assert reason_text("same_phone") == "Same phone number"
    assert reason_text("unknown_code") == "unknown_code"


def test_evaluation_counts_pairs_within_people() -> None:
    person_of = {1: 10, 2: 10, 3: 10, 4: 20, 5: 30}
    assert true_pairs(person_of) == {(1, 2), (1, 3), (2, 3)}
    result = evaluate([(2, 1), (1, 3), (4, 5)], person_of)
    assert (result.true_pairs, result.found_pairs, result.correct_pairs) == (3, 3, 2)
    assert round(result.precision, 3) == 0.667
    assert round(result.recall, 3) == 0.667

"""Every prompt in English, Arabic and Persian, in the right script, with the same fields; counts and dates."""

from __future__ import annotations

import re
import string
from datetime import datetime

import pytest

from hatif.voicemail.prompts import LANGUAGES, MONTHS, PROMPTS, caller, counts, jalali, language_of, spell, when

LATIN = re.compile(r"[A-Za-z]")
ARABIC_SCRIPT = re.compile(r"[\u0600-\u06FF]")
PERSIAN_ONLY = "\u06cc\u06a9\u067e\u0686\u0698\u06af"  # ی ک پ چ ژ گ
ARABIC_ONLY = "\u064a\u0643\u0629"  # ي ك ة


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(PROMPTS))
def test_every_prompt_in_every_language(key: str) -> None:
    texts = PROMPTS[key]
    assert set(texts) == set(LANGUAGES)
    for language in LANGUAGES:
        assert texts[language].strip(), f"{key}/{language} is empty"
        assert fields(texts[language]) == fields(texts["en"]), f"{key}/{language} has other fields than English"
    ar, fa = (re.sub(r"\{[a-z_]+\}", "", texts[x]) for x in ("ar", "fa"))
    assert ARABIC_SCRIPT.search(ar) and not LATIN.search(ar), key
    assert ARABIC_SCRIPT.search(fa) and not LATIN.search(fa), key
    assert not set(ar) & set(PERSIAN_ONLY), f"{key}: Persian letters in the Arabic text"
    assert not set(fa) & set(ARABIC_ONLY), f"{key}: Arabic letter forms (ي ك ة) in the Persian text"
    assert ar != fa


def test_months_and_fallbacks() -> None:
    assert all(len(MONTHS[x]) == 12 and len(set(MONTHS[x])) == 12 for x in LANGUAGES)
    assert [language_of(x) for x in ("ar", "fa-IR", "EN", "ar_EG", "de", "")] == ["ar", "fa", "en", "ar", "en", "en"]


def test_counts_are_grammatical() -> None:
    assert counts(PROMPTS, "en", 1, 0) == "You have 1 new message and 0 saved messages."
    assert counts(PROMPTS, "en", 2, 1) == "You have 2 new messages and 1 saved message."
    assert counts(PROMPTS, "fa", 0, 5) == "شما 0 پیام جدید و 5 پیام ذخیره‌شده دارید."
    assert counts(PROMPTS, "ar", 11, 0) == "عدد الرسائل الجديدة لديك 11، وعدد الرسائل المحفوظة 0."


@pytest.mark.parametrize(("gregorian", "solar_hijri"), [
    ((2024, 3, 20), (1403, 1, 1)),     # Nowruz 1403
    ((2025, 3, 21), (1404, 1, 1)),     # Nowruz 1404
    ((2025, 3, 20), (1403, 12, 30)),   # 1403 is a leap year: Esfand has 30 days
    ((2023, 3, 21), (1402, 1, 1)),
    ((1979, 2, 11), (1357, 11, 22)),
    ((2024, 12, 21), (1403, 10, 1)),   # 1 Dey, the day after Yalda night
    ((2000, 1, 1), (1378, 10, 11)),
])
def test_jalali(gregorian: tuple[int, int, int], solar_hijri: tuple[int, int, int]) -> None:
    assert jalali(*gregorian) == solar_hijri


def test_spoken_dates_and_callers() -> None:
    moment = datetime(2025, 3, 21, 9, 5)
    assert when(PROMPTS, "en", moment) == "on March 21 at 09:05"
    assert when(PROMPTS, "ar", moment) == "في 21 مارس الساعة 09:05"
    assert when(PROMPTS, "fa", moment) == "1 فروردین ساعت 09:05"
    assert spell("+44 20") == "+44 20" and spell("+4420") == "4 4 2 0" and spell("alice") == "alice"
    assert caller(PROMPTS, "en", "1002", "Alice") == "Alice, 1 0 0 2"
    assert caller(PROMPTS, "fa", "1002", None) == "1 0 0 2"
    assert caller(PROMPTS, "ar", "anonymous", None) == PROMPTS["unknown_caller"]["ar"]
    assert caller(PROMPTS, "en", "", "  ") == "an unknown caller"

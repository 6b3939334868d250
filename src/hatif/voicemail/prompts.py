"""Everything voicemail says to callers and owners, in English, Arabic and Persian.

Texts are spoken by espeak-ng (`Channel.say`), so they are written for the ear: keys are named ("the pound
key", "مفتاح المربع", "کلید مربع") rather than printed as `#`, and numbers that are not quantities (extensions,
phone numbers) are spelled digit by digit. Counts and dates need grammar, not just a template: Arabic agrees
nouns with numbers, so the count sentence is phrased to be right for every number; Persian dates are given in
the Solar Hijri calendar Iranian callers use, Arabic and English ones in the Gregorian calendar.

`PROMPTS` maps a prompt's key to its text per language; `{name}`-style fields are filled with `str.format`.
A deployment may pass its own table (same keys, same fields) to the service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from .model import Language

LANGUAGES: Final[tuple[Language, ...]] = ("en", "ar", "fa")

PromptTexts = Mapping[str, Mapping[Language, str]]

PROMPTS: Final[PromptTexts] = {
    "unavailable": {
        "en": "{mailbox} is not available. Please leave a message after the tone. "
              "Press the pound key when you are done.",
        "ar": "{mailbox} غير متاح حاليًا. يُرجى ترك رسالة بعد سماع الصفارة، ثم الضغط على مفتاح المربع عند الانتهاء.",
        "fa": "{mailbox} در دسترس نیست. لطفاً پس از شنیدن صدای بوق پیام بگذارید و در پایان کلید مربع را فشار دهید.",
    },
    "saved": {
        "en": "Message saved. Goodbye.",
        "ar": "تم حفظ رسالتك. مع السلامة.",
        "fa": "پیام شما ذخیره شد. خدانگهدار.",
    },
    "store_failed": {
        "en": "Sorry, your message could not be saved. Please try again later. Goodbye.",
        "ar": "عذرًا، تعذّر حفظ رسالتك. يُرجى المحاولة مرة أخرى لاحقًا. مع السلامة.",
        "fa": "متأسفیم، پیام شما ذخیره نشد. لطفاً بعداً دوباره تماس بگیرید. خدانگهدار.",
    },
    "too_short": {
        "en": "Your message was too short and was not saved. Goodbye.",
        "ar": "رسالتك قصيرة جدًا ولم يتم حفظها. مع السلامة.",
        "fa": "پیام شما خیلی کوتاه بود و ذخیره نشد. خدانگهدار.",
    },
    "enter_mailbox": {
        "en": "Please enter your mailbox number, then press the pound key.",
        "ar": "يُرجى إدخال رقم صندوق البريد الصوتي، ثم الضغط على مفتاح المربع.",
        "fa": "لطفاً شماره‌ی صندوق پیام خود را وارد کنید و سپس کلید مربع را فشار دهید.",
    },
    "enter_pin": {
        "en": "Please enter your PIN, then press the pound key.",
        "ar": "يُرجى إدخال الرقم السري، ثم الضغط على مفتاح المربع.",
        "fa": "لطفاً رمز خود را وارد کنید و سپس کلید مربع را فشار دهید.",
    },
    "login_incorrect": {
        "en": "Incorrect. Please try again.",
        "ar": "البيانات غير صحيحة. يُرجى المحاولة مرة أخرى.",
        "fa": "اطلاعات وارد شده نادرست است. لطفاً دوباره تلاش کنید.",
    },
    "login_failed": {
        "en": "Incorrect. Goodbye.",
        "ar": "البيانات غير صحيحة. مع السلامة.",
        "fa": "اطلاعات وارد شده نادرست است. خدانگهدار.",
    },
    "counts": {
        "en": "You have {new} and {saved}.",
        "ar": "عدد الرسائل الجديدة لديك {new}، وعدد الرسائل المحفوظة {saved}.",
        "fa": "شما {new} پیام جدید و {saved} پیام ذخیره‌شده دارید.",
    },
    "new_message": {
        "en": "New message {number}, from {caller}, received {when}.",
        "ar": "رسالة جديدة رقم {number}، من {caller}، وصلت {when}.",
        "fa": "پیام جدید شماره‌ی {number}، از {caller}، دریافت‌شده در {when}.",
    },
    "saved_message": {
        "en": "Saved message {number}, from {caller}, received {when}.",
        "ar": "رسالة محفوظة رقم {number}، من {caller}، وصلت {when}.",
        "fa": "پیام ذخیره‌شده‌ی شماره‌ی {number}، از {caller}، دریافت‌شده در {when}.",
    },
    "when": {
        "en": "on {month} {day} at {hour}:{minute}",
        "ar": "في {day} {month} الساعة {hour}:{minute}",
        "fa": "{day} {month} ساعت {hour}:{minute}",
    },
    "unknown_caller": {
        "en": "an unknown caller",
        "ar": "متصل مجهول",
        "fa": "تماس‌گیرنده‌ی ناشناس",
    },
    "after_message": {
        "en": "To delete it, press 7. To save it, press 9. For the next message, press 6. For help, press 0.",
        "ar": "للحذف اضغط 7، وللحفظ اضغط 9، وللرسالة التالية اضغط 6، وللمساعدة اضغط 0.",
        "fa": "برای حذف 7، برای ذخیره 9، برای پیام بعدی 6 و برای راهنما 0 را فشار دهید.",
    },
    "help": {
        "en": "Press 7 to delete this message, 9 to save it, 4 for the previous message, 6 for the next message, "
              "the star key to hear it again, 0 for help, or the pound key to hang up.",
        "ar": "اضغط 7 لحذف هذه الرسالة، و9 لحفظها، و4 للرسالة السابقة، و6 للرسالة التالية، ومفتاح النجمة "
              "لإعادتها، و0 للمساعدة، أو مفتاح المربع لإنهاء المكالمة.",
        "fa": "برای حذف این پیام 7، برای ذخیره‌ی آن 9، برای پیام قبلی 4، برای پیام بعدی 6، برای شنیدن دوباره‌ی "
              "آن کلید ستاره، برای راهنما 0 و برای پایان تماس کلید مربع را فشار دهید.",
    },
    "invalid_key": {
        "en": "That key is not valid.",
        "ar": "هذا الاختيار غير صحيح.",
        "fa": "این کلید معتبر نیست.",
    },
    "deleted": {
        "en": "Message deleted.",
        "ar": "تم حذف الرسالة.",
        "fa": "پیام حذف شد.",
    },
    "marked_saved": {
        "en": "Message saved.",
        "ar": "تم حفظ الرسالة.",
        "fa": "پیام ذخیره شد.",
    },
    "first_message": {
        "en": "This is the first message.",
        "ar": "هذه هي الرسالة الأولى.",
        "fa": "این اولین پیام است.",
    },
    "no_more": {
        "en": "No more messages. For the previous message, press 4. To hang up, press the pound key.",
        "ar": "لا توجد رسائل أخرى. للرسالة السابقة اضغط 4، ولإنهاء المكالمة اضغط مفتاح المربع.",
        "fa": "پیام دیگری ندارید. برای پیام قبلی 4 و برای پایان تماس کلید مربع را فشار دهید.",
    },
    "unplayable": {
        "en": "Sorry, this message cannot be played.",
        "ar": "عذرًا، لا يمكن تشغيل هذه الرسالة.",
        "fa": "متأسفیم، این پیام قابل پخش نیست.",
    },
    "failed": {
        "en": "Sorry, that did not work.",
        "ar": "عذرًا، لم تنجح العملية.",
        "fa": "متأسفیم، این کار انجام نشد.",
    },
    "goodbye": {
        "en": "Goodbye.",
        "ar": "مع السلامة.",
        "fa": "خدانگهدار.",
    },
}

MONTHS: Final[Mapping[Language, tuple[str, ...]]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "ar": ("يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر", "أكتوبر", "نوفمبر",
           "ديسمبر"),
    # Solar Hijri months: Persian dates are converted with `jalali` first.
    "fa": ("فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور", "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند"),
}

_PHONE = re.compile(r"\+?[0-9*#]+")


def language_of(code: str) -> Language:
    """The prompt language for a channel's language code (`ar`, `fa-IR`, `EN`): English when we have none."""
    base = code.split("-", 1)[0].split("_", 1)[0].lower()
    for language in LANGUAGES:
        if base == language:
            return language
    return "en"


def text(prompts: PromptTexts, key: str, language: Language, **fields: object) -> str:
    """The prompt `key` in `language` (English when the table lacks that language), fields filled in."""
    texts = prompts[key]
    template = texts.get(language) or texts["en"]
    return template.format(**fields) if fields else template


def spell(number: str) -> str:
    """A phone number or extension as separate digits (`1002` -> `1 0 0 2`), so it is not read as a quantity."""
    if _PHONE.fullmatch(number):
        return " ".join(c for c in number if c.isdigit())
    return number


def counts(prompts: PromptTexts, language: Language, new: int, saved: int) -> str:
    """"You have 2 new messages and 1 saved message", grammatical in each language for every count."""
    if language == "en":
        return text(prompts, "counts", language, new=_english_count(new, "new"),
                    saved=_english_count(saved, "saved"))
    return text(prompts, "counts", language, new=new, saved=saved)


def _english_count(n: int, adjective: str) -> str:
    return f"{n} {adjective} message" if n == 1 else f"{n} {adjective} messages"


def jalali(year: int, month: int, day: int) -> tuple[int, int, int]:
    """A Gregorian date in the Solar Hijri (Jalali) calendar, with its 33-year arithmetic leap cycle.

    Exact for the years a voicemail can carry (the arithmetic cycle agrees with the astronomical calendar from
    1178 to 1634 AP, that is 1799 to 2256 CE).
    """
    days_before = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
    leap_year = year + 1 if month > 2 else year
    days = (355666 + 365 * year + (leap_year + 3) // 4 - (leap_year + 99) // 100 + (leap_year + 399) // 400
            + day + days_before[month - 1])
    j_year = -1595 + 33 * (days // 12053)
    days %= 12053
    j_year += 4 * (days // 1461)
    days %= 1461
    if days > 365:
        j_year += (days - 1) // 365
        days = (days - 1) % 365
    if days < 186:
        return j_year, 1 + days // 31, 1 + days % 31
    return j_year, 7 + (days - 186) // 30, 1 + (days - 186) % 30


def when(prompts: PromptTexts, language: Language, moment: datetime) -> str:
    """The day, month and time of `moment` (already in the listener's zone) as spoken in `language`."""
    month, day = moment.month, moment.day
    if language == "fa":
        _, month, day = jalali(moment.year, moment.month, moment.day)
    return text(prompts, "when", language, month=MONTHS[language][month - 1], day=day, hour=f"{moment.hour:02d}",
                minute=f"{moment.minute:02d}")


def caller(prompts: PromptTexts, language: Language, number: str, name: str | None) -> str:
    """Who left a message: the name and the spelled number, or "an unknown caller"."""
    known = number if number and number.lower() not in ("anonymous", "unknown", "restricted") else ""
    parts = [p for p in ((name or "").strip(), spell(known)) if p]
    if not parts:
        return text(prompts, "unknown_caller", language)
    return (", " if language == "en" else "، ").join(parts)

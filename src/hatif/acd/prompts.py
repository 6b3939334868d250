"""What a waiting caller and an agent hear from the ACD, in English, Arabic and Persian."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "position": {
        "en": "You are number {position} in line.",
        "ar": "ترتيبك في الانتظار هو {position}.",
        "fa": "شما نفر {position} در صف هستید.",
    },
    "wait": {
        "en": "Your expected wait is about {minutes} minutes.",
        "ar": "مدة الانتظار المتوقعة حوالي {minutes} دقائق.",
        "fa": "زمان انتظار تقریبی شما {minutes} دقیقه است.",
    },
    "wait_short": {
        "en": "An agent will be with you shortly.",
        "ar": "سيرد عليك أحد موظفينا قريبًا.",
        "fa": "به زودی یکی از همکاران ما پاسخ می‌دهد.",
    },
    "keys": {
        "en": "To be called back instead of waiting, press {callback}.",
        "ar": "لنتصل بك بدلًا من الانتظار، اضغط {callback}.",
        "fa": "برای اینکه به جای انتظار با شما تماس بگیریم، {callback} را فشار دهید.",
    },
    "voicemail_key": {
        "en": "To leave a message, press {voicemail}.",
        "ar": "لترك رسالة، اضغط {voicemail}.",
        "fa": "برای گذاشتن پیام، {voicemail} را فشار دهید.",
    },
    "callback_ok": {
        "en": "Thank you. You keep your place in line, and we will call you back. Goodbye.",
        "ar": "شكرًا لك. ستحتفظ بدورك في الانتظار وسنتصل بك. مع السلامة.",
        "fa": "سپاسگزاریم. نوبت شما محفوظ است و با شما تماس می‌گیریم. خدانگهدار.",
    },
    "unavailable": {
        "en": "Sorry, no one can take your call now.",
        "ar": "عذرًا، لا يمكن لأحد الرد على اتصالك الآن.",
        "fa": "متأسفیم، اکنون کسی نمی‌تواند به تماس شما پاسخ دهد.",
    },
    "callback_agent": {
        "en": "Callback to {number}.",
        "ar": "معاودة اتصال بالرقم {number}.",
        "fa": "تماس برگشتی با شماره {number}.",
    },
    "callback_customer": {
        "en": "Hello, this is the call back you asked for. Please hold for an agent.",
        "ar": "مرحبًا، هذا هو الاتصال الذي طلبته. يرجى الانتظار.",
        "fa": "سلام، این تماس برگشتی درخواستی شماست. لطفاً منتظر بمانید.",
    },
    "agent_login": {
        "en": "You are logged in.",
        "ar": "تم تسجيل دخولك.",
        "fa": "شما وارد شدید.",
    },
    "agent_logout": {
        "en": "You are logged out.",
        "ar": "تم تسجيل خروجك.",
        "fa": "شما خارج شدید.",
    },
    "agent_ready": {
        "en": "You are ready for calls.",
        "ar": "أنت جاهز لاستقبال المكالمات.",
        "fa": "شما آماده دریافت تماس هستید.",
    },
    "agent_pause": {
        "en": "You are not ready: {reason}.",
        "ar": "أنت غير جاهز: {reason}.",
        "fa": "شما آماده نیستید: {reason}.",
    },
    "agent_wrapup": {
        "en": "Your after-call work is extended.",
        "ar": "تم تمديد وقت ما بعد المكالمة.",
        "fa": "زمان کار پس از تماس شما تمدید شد.",
    },
    "agent_refused": {
        "en": "That is not possible now.",
        "ar": "هذا غير ممكن الآن.",
        "fa": "این کار اکنون ممکن نیست.",
    },
    "not_an_agent": {
        "en": "You are not an agent of any queue.",
        "ar": "أنت لست موظفًا في أي طابور.",
        "fa": "شما عضو هیچ صفی نیستید.",
    },
}


def text(key: str, language: str, **fields: object) -> str:
    table = TEXTS[key]
    return table.get(language, table["en"]).format(**fields)

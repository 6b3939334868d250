"""Voicemail on a call: a caller leaves a message, an owner listens to theirs (FEATURES.md §2, voicemail).

Both functions drive a `hatif.calls.api.Channel` and a `RecordStore`; they own no socket and no audio. The
store is synchronous, so every call to it goes through `asyncio.to_thread`.

Leaving a message keeps SECURITY.md's *persist before acknowledging*: the caller hears "Message saved" only
after the store has the message, and hears an apology (the file is kept on disk and logged for recovery) when
the store fails. A caller who hangs up after speaking still leaves the message; nothing is spoken to a caller
who is gone. After each message stored, heard or deleted the mailbox's counts are logged and handed to the
`Notifier`, which sends MWI (RFC 3842) to the owner's phones.

The owner's menu (`check_messages`) asks the same questions whether a mailbox exists or not, and compares PINs
in constant time, so a caller cannot learn which mailboxes exist (SECURITY.md: no enumeration).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Final

from ..calls.api import Channel, Hangup, Recorded
from ..store.records import RecordStore, VoicemailMessage
from . import prompts as spoken
from .files import message_path, remove, reserve
from .model import Language, Mailbox, VoicemailSettings
from .mwi import Notifier
from .prompts import PROMPTS, PromptTexts

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

MENU_KEYS: Final = frozenset("79461*#")
"""Keys the message menu acts on; 0 (help) and anything else ask again."""
MAX_MENU_STEPS: Final = 1000
"""Upper bound on messages played and keys handled in one session of the owner's menu."""
MAX_RETRIES: Final = 5
"""Help or invalid keys in a row after one message before the menu moves on by itself."""
_NO_PIN: Final = "\x00" * 12
"""Compared against when the mailbox is unknown or has no PIN, so both take the time of a real comparison."""


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- leaving a message -----------------------------------------------------------------------------------------


async def leave_message(channel: Channel, mailbox: Mailbox, *, store: RecordStore, settings: VoicemailSettings,
                        notifier: Notifier | None = None, prompts: PromptTexts = PROMPTS,
                        now: Clock = utc_now) -> VoicemailMessage | None:
    """Greet the caller, record a message after the beep (`#` ends it) and store it.

    Returns the stored message, or None when nothing was kept: the caller hung up before the beep, the message
    was shorter than `mailbox.min_seconds` (its file is removed), or recording or storing failed.
    """
    language = spoken.language_of(channel.language)
    fields: dict[str, object] = {"tenant": channel.tenant, "mailbox": mailbox.name, "call_id": channel.call_id}
    try:
        await channel.answer()
        await _greet(channel, mailbox, prompts, language)
    except Hangup:
        log.info("caller hung up before leaving a voicemail", extra={"fields": fields})
        return None
    received = now().astimezone(UTC)
    try:
        path = await asyncio.to_thread(_new_file, settings.folder, channel.tenant, mailbox.name, received,
                                       channel.call_id)
    except (OSError, ValueError):
        log.exception("no file for a voicemail", extra={"fields": fields})
        await _finish(channel, None, text=spoken.text(prompts, "store_failed", language))
        return None
    recorded = await _record(channel, mailbox, path, fields)
    if recorded is None:
        await _finish(channel, None, text=spoken.text(prompts, "store_failed", language))
        return None
    fields |= {"path": str(recorded.path), "seconds": round(recorded.seconds, 3), "ended_by": recorded.ended_by}
    if recorded.seconds < mailbox.min_seconds:
        await _remove(recorded.path)
        log.info("voicemail too short, discarded", extra={"fields": fields})
        await _finish(channel, recorded, text=spoken.text(prompts, "too_short", language))
        return None
    message = VoicemailMessage(tenant=channel.tenant, mailbox=mailbox.name, caller=channel.caller_number,
                               caller_name=channel.caller_name, received=received, seconds=recorded.seconds,
                               path=str(recorded.path), sha256=recorded.sha256, call_id=channel.call_id)
    try:
        message.id = await asyncio.to_thread(store.add_voicemail, message)
    except Exception:
        log.exception("voicemail could not be stored; its file is kept", extra={"fields": fields})
        await _finish(channel, recorded, text=spoken.text(prompts, "store_failed", language))
        return None
    log.info("voicemail stored", extra={"fields": fields | {"id": message.id, "caller": message.caller}})
    await announce(store, notifier, channel.tenant, mailbox)
    await _finish(channel, recorded, text=spoken.text(prompts, "saved", language))
    return message


def _new_file(folder: Path, tenant: str, mailbox: str, received: datetime, call_id: str) -> Path:
    return reserve(message_path(folder, tenant, mailbox, received, call_id))


async def _greet(channel: Channel, mailbox: Mailbox, prompts: PromptTexts, language: Language) -> None:
    """The mailbox's greeting; any key skips it (and is not taken as the end of the recording)."""
    if mailbox.greeting_file is not None:
        try:
            await channel.play(mailbox.greeting_file, interrupt=True)
            return
        except (OSError, ValueError):
            log.exception("voicemail greeting cannot be played; using the default one",
                          extra={"fields": {"mailbox": mailbox.name, "file": str(mailbox.greeting_file)}})
    greeting = mailbox.greeting_text(language)
    if greeting is None:
        greeting = spoken.text(prompts, "unavailable", language, mailbox=_spoken_name(mailbox))
    await channel.say(greeting, language=language, interrupt=True)


def _spoken_name(mailbox: Mailbox) -> str:
    return mailbox.display_name or spoken.spell(mailbox.name)


async def _record(channel: Channel, mailbox: Mailbox, path: Path, fields: dict[str, object]) -> Recorded | None:
    """Record into `path`; None (and the partial file removed) when the recording could not be made."""
    try:
        return await channel.record(path, max_seconds=mailbox.max_seconds, terminators="#", beep=True)
    except Hangup:
        log.info("caller hung up before the recording began", extra={"fields": fields})
    except Exception:
        log.exception("voicemail recording failed", extra={"fields": fields})
    await _remove(path)
    return None


async def _finish(channel: Channel, recorded: Recorded | None, *, text: str) -> None:
    """Say a last sentence and hang up, unless the caller is already gone."""
    if channel.ended or (recorded is not None and recorded.ended_by == "hangup"):
        return
    with contextlib.suppress(Hangup):  # gone while we spoke: nothing left to say
        await channel.say(text)
        await channel.hangup()


async def _remove(path: Path) -> None:
    try:
        await asyncio.to_thread(remove, path)
    except OSError:
        log.exception("voicemail file could not be removed", extra={"fields": {"path": str(path)}})


async def announce(store: RecordStore, notifier: Notifier | None, tenant: str, mailbox: Mailbox) -> None:
    """Count the mailbox's new and heard messages, log them and tell the notifier (MWI); never raises."""
    fields: dict[str, object] = {"tenant": tenant, "mailbox": mailbox.name, "recipients": list(mailbox.recipients)}
    try:
        messages = await asyncio.to_thread(store.voicemails, tenant, mailbox.name)
    except Exception:
        log.exception("voicemail counts unavailable; no message-waiting notice", extra={"fields": fields})
        return
    new = sum(1 for m in messages if not m.heard)
    old = len(messages) - new
    log.info("voicemail waiting", extra={"fields": fields | {"new": new, "old": old}})
    if notifier is None:
        return
    try:
        await notifier.notify(tenant, mailbox, new, old)
    except Exception:
        log.exception("message-waiting notice failed", extra={"fields": fields})


# -- the owner's menu ------------------------------------------------------------------------------------------


async def check_messages(channel: Channel, mailboxes: Iterable[Mailbox], *, store: RecordStore,
                         settings: VoicemailSettings, notifier: Notifier | None = None,
                         prompts: PromptTexts = PROMPTS, zone: tzinfo = UTC,
                         mailbox: str | None = None) -> Mailbox | None:
    """The voicemail menu: log in with the mailbox's PIN, hear the counts, then each new and each saved message.

    `mailbox` names the mailbox to open (a dial-plan entry for one mailbox); without it a caller who owns a
    mailbox opens their own, anyone else is asked for the mailbox number. The PIN is always asked, and a wrong
    one `settings.pin_attempts` times ends the call. Times are spoken in `zone`. Returns the mailbox that was
    opened, or None.
    """
    language = spoken.language_of(channel.language)
    boxes = list(mailboxes)
    opened: Mailbox | None = None
    try:
        await channel.answer()
        opened = await _log_in(channel, boxes, mailbox, settings=settings, prompts=prompts, language=language)
        if opened is not None:
            session = _Session(channel, opened, store=store, notifier=notifier, settings=settings, prompts=prompts,
                               language=language, zone=zone)
            await session.run()
            await channel.say(spoken.text(prompts, "goodbye", language))
        await channel.hangup()
    except Hangup:
        log.info("voicemail menu left by hang-up",
                 extra={"fields": {"tenant": channel.tenant, "call_id": channel.call_id,
                                   "mailbox": opened.name if opened else None}})
    return opened


async def _log_in(channel: Channel, boxes: list[Mailbox], requested: str | None, *, settings: VoicemailSettings,
                  prompts: PromptTexts, language: Language) -> Mailbox | None:
    own = _find(boxes, requested) if requested is not None else _own(boxes, channel.caller_number)
    ask_number = requested is None and own is None
    for attempt in range(1, settings.pin_attempts + 1):
        box = own
        number = ""
        if ask_number:
            number = await _digits(channel, spoken.text(prompts, "enter_mailbox", language), 32, settings)
            box = next((b for b in boxes if number and number in b.numbers), None)
        pin = await _digits(channel, spoken.text(prompts, "enter_pin", language), 16, settings)
        if _pin_matches(box, pin) and box is not None:
            log.info("voicemail mailbox opened", extra={"fields": {"tenant": channel.tenant, "mailbox": box.name,
                                                                   "caller": channel.caller_number}})
            return box
        log.warning("voicemail log-in failed", extra={"fields": {
            "tenant": channel.tenant, "caller": channel.caller_number, "call_id": channel.call_id,
            "mailbox": box.name if box else number or requested, "attempt": attempt}})
        last = attempt == settings.pin_attempts
        await channel.say(spoken.text(prompts, "login_failed" if last else "login_incorrect", language))
    return None


def _find(boxes: list[Mailbox], name: str) -> Mailbox | None:
    return next((b for b in boxes if b.name == name), None)


def _own(boxes: list[Mailbox], caller: str) -> Mailbox | None:
    """The caller's own mailbox: the one named after them, else one they own."""
    return _find(boxes, caller) or next((b for b in boxes if b.owner is not None and b.owner == caller), None)


def _pin_matches(box: Mailbox | None, entered: str) -> bool:
    """Constant-time PIN check; a missing mailbox or PIN takes the same path and never matches."""
    expected = box.pin if box is not None else None
    same = hmac.compare_digest(entered.encode(), (expected or _NO_PIN).encode())
    return same and expected is not None


async def _digits(channel: Channel, prompt: str, max_digits: int, settings: VoicemailSettings) -> str:
    """Speak `prompt` (a key interrupts it and counts as the first digit) and collect digits up to `#`."""
    first = await channel.say(prompt, interrupt=True)
    if first == "#":
        return ""
    if first:
        rest = await channel.collect(max_digits=max_digits - 1, timeout=settings.inter_digit,
                                     inter_digit=settings.inter_digit, terminators="#")
        return first + rest
    return await channel.collect(max_digits=max_digits, timeout=settings.digit_timeout,
                                 inter_digit=settings.inter_digit, terminators="#")


@dataclass(slots=True)
class _Item:
    message: VoicemailMessage
    was_new: bool  # new when the session began: it keeps its place and its "new message N" after being heard


class _Session:
    """One logged-in owner going through their messages: new ones first, then saved ones, oldest first."""

    def __init__(self, channel: Channel, mailbox: Mailbox, *, store: RecordStore, notifier: Notifier | None,
                 settings: VoicemailSettings, prompts: PromptTexts, language: Language, zone: tzinfo) -> None:
        self.channel = channel
        self.mailbox = mailbox
        self.store = store
        self.notifier = notifier
        self.settings = settings
        self.prompts = prompts
        self.language = language
        self.zone = zone
        self.items: list[_Item] = []

    def _text(self, key: str, **fields: object) -> str:
        return spoken.text(self.prompts, key, self.language, **fields)

    async def run(self) -> None:
        messages = await asyncio.to_thread(self.store.voicemails, self.channel.tenant, self.mailbox.name)
        new = sorted((m for m in messages if not m.heard), key=lambda m: m.received)
        saved = sorted((m for m in messages if m.heard), key=lambda m: m.received)
        self.items = [_Item(m, True) for m in new] + [_Item(m, False) for m in saved]
        await self.channel.say(spoken.counts(self.prompts, self.language, len(new), len(saved)))
        index: int | None = 0
        for _ in range(MAX_MENU_STEPS):
            if not self.items or index is None:
                return
            if index >= len(self.items):
                key = await self._key(self._text("no_more"))
                if key != "4":
                    return
                index = len(self.items) - 1
                continue
            key = await self._present(index)
            index = await self._act(index, await self._choose(key))

    async def _key(self, prompt: str) -> str:
        """Speak `prompt`, interruptible, and return the key pressed during it or after it ("" for none)."""
        key = await self.channel.say(prompt, interrupt=True)
        if key:
            return key
        return await self.channel.collect(max_digits=1, timeout=self.settings.digit_timeout, terminators="")

    async def _present(self, index: int) -> str:
        """Who and when, then the message; marks it heard when it played to the end. Returns the key pressed."""
        item = self.items[index]
        message = item.message
        number = sum(1 for other in self.items[:index] if other.was_new == item.was_new) + 1
        intro = self._text("new_message" if item.was_new else "saved_message", number=number,
                           caller=spoken.caller(self.prompts, self.language, message.caller, message.caller_name),
                           when=spoken.when(self.prompts, self.language, message.received.astimezone(self.zone)))
        key = await self.channel.say(intro, interrupt=True)
        if key:
            return key
        try:
            key = await self.channel.play(Path(message.path), interrupt=True)
        except (OSError, ValueError):
            log.exception("voicemail message cannot be played", extra={"fields": self._fields(message)})
            return await self._key(self._text("unplayable") + " " + self._text("after_message"))
        if key:
            return key
        await self._mark_heard(message)
        return await self._key(self._text("after_message"))

    async def _choose(self, key: str) -> str:
        """A key the menu acts on ("" to go on): help for 0, "not valid" for others, at most `MAX_RETRIES`."""
        for _ in range(MAX_RETRIES):
            if key == "" or key in MENU_KEYS:
                return key
            prompt = self._text("help") if key == "0" else self._text("invalid_key") + " " + self._text("help")
            key = await self._key(prompt)
        return key if key in MENU_KEYS else ""

    async def _act(self, index: int, key: str) -> int | None:
        """Do what `key` asks for the message at `index`; the index to present next, None to leave."""
        message = self.items[index].message
        if key == "#":
            return None
        if key == "7":
            if await self._delete(message):
                del self.items[index]
                await self.channel.say(self._text("deleted"))
                return index
            await self.channel.say(self._text("failed"))
            return index + 1
        if key == "9":
            await self._mark_heard(message)
            await self.channel.say(self._text("marked_saved") if message.heard else self._text("failed"))
            return index + 1
        if key == "4":
            if index == 0:
                await self.channel.say(self._text("first_message"))
                return 0
            return index - 1
        if key == "*":
            return index
        return index + 1  # "6", or nothing pressed: on to the next message

    def _fields(self, message: VoicemailMessage) -> dict[str, object]:
        return {"tenant": self.channel.tenant, "mailbox": self.mailbox.name, "id": message.id}

    async def _mark_heard(self, message: VoicemailMessage) -> None:
        if message.heard or message.id is None:
            return
        try:
            if not await asyncio.to_thread(self.store.mark_heard, self.channel.tenant, message.id, True):
                log.warning("voicemail message to mark heard is gone", extra={"fields": self._fields(message)})
                return
        except Exception:
            log.exception("voicemail message could not be marked heard", extra={"fields": self._fields(message)})
            return
        message.heard = True
        await announce(self.store, self.notifier, self.channel.tenant, self.mailbox)

    async def _delete(self, message: VoicemailMessage) -> bool:
        if message.id is None:
            return False
        try:
            deleted = await asyncio.to_thread(self.store.delete_voicemail, self.channel.tenant, message.id)
        except Exception:
            log.exception("voicemail message could not be deleted", extra={"fields": self._fields(message)})
            return False
        if not deleted:
            log.warning("voicemail message to delete was already gone", extra={"fields": self._fields(message)})
            return True
        await _remove(Path(message.path))
        log.info("voicemail message deleted", extra={"fields": self._fields(message)})
        await announce(self.store, self.notifier, self.channel.tenant, self.mailbox)
        return True

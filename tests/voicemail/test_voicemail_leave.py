"""Leaving a voicemail: greeting, recording, what is stored, what the caller hears, and in which order."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import wave
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from voicemail_fakes import FakeChannel, FakeNotifier, FakeStore, Speech, write_wav

from hatif.store.records import VoicemailMessage
from hatif.voicemail import Mailbox, VoicemailSettings, leave_message
from hatif.voicemail.prompts import PROMPTS

NOW = datetime(2025, 3, 1, 10, 15, 30, tzinfo=UTC)
BOB = Mailbox(name="bob", owner="bob", pin="1234")


def run(channel: FakeChannel, mailbox: Mailbox, tmp_path: Path, *, store: FakeStore | None = None,
        notifier: FakeNotifier | None = None, now: datetime = NOW) -> VoicemailMessage | None:
    settings = VoicemailSettings(folder=tmp_path / "vm")
    return asyncio.run(asyncio.wait_for(leave_message(channel, mailbox, store=store or FakeStore(), settings=settings,
                                                      notifier=notifier, now=lambda: now), timeout=10))


def wav_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "vm").rglob("*.wav"))


def test_message_is_stored_with_caller_time_duration_and_a_valid_wav(tmp_path: Path) -> None:
    channel = FakeChannel(speech=Speech(talk=3.0, pound_at=3.25))
    store = FakeStore(journal=channel.events)
    notifier = FakeNotifier()
    message = run(channel, BOB, tmp_path, store=store, notifier=notifier)

    assert message is not None and message.id == 1
    stored = store.rows[1]
    assert (stored.tenant, stored.mailbox, stored.caller, stored.caller_name) == ("default", "bob", "1002", "Alice")
    assert stored.received == NOW and stored.received.tzinfo is not None
    assert stored.call_id == "call-1" and not stored.heard
    assert stored.seconds == pytest.approx(3.25)
    path = Path(stored.path)
    assert path == tmp_path / "vm" / "default" / "bob" / "20250301T101530Z-call-1.wav"
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 8000, 2)
        assert w.getnframes() / w.getframerate() == pytest.approx(stored.seconds, abs=1 / 8000)
    assert stored.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    # greeted, then recorded with # to end and the mailbox's length, after a beep
    assert channel.kinds()[:3] == ["answer", "say", "record"]
    assert channel.said[0] == ("bob is not available. Please leave a message after the tone. "
                               "Press the pound key when you are done.")
    record = next(e for e in channel.events if e[0] == "record")
    assert record[2:] == (120.0, "#", True)
    # persisted before the caller is told, then goodbye and hang-up
    assert channel.kinds()[-4:] == ["record", "store", "say", "hangup"]
    assert channel.said[-1] == "Message saved. Goodbye."
    assert notifier.calls == [("default", "bob", 1, 0)]


def test_default_greeting_names_the_mailbox_in_the_callers_language(tmp_path: Path) -> None:
    sales = Mailbox(name="sales", display_name="Sales")
    for language in ("en", "ar", "fa"):
        channel = FakeChannel(language=language, speech=Speech(pound_at=2.0))
        assert run(channel, sales, tmp_path) is not None
        assert channel.said[0] == PROMPTS["unavailable"][language].format(mailbox="Sales")
        assert channel.events[1][2] == language
        assert channel.said[-1] == PROMPTS["saved"][language]
    channel = FakeChannel(language="de", speech=Speech(pound_at=2.0))  # no German prompts: English
    run(channel, sales, tmp_path)
    assert channel.said[0].startswith("Sales is not available.")


def test_configured_greetings_text_per_language_and_wav(tmp_path: Path) -> None:
    box = Mailbox(name="sales", greeting={"en": "Sales is closed.", "ar": "قسم المبيعات مغلق."})
    channel = FakeChannel(language="ar", speech=Speech(pound_at=2.0))
    run(channel, box, tmp_path)
    assert channel.said[0] == "قسم المبيعات مغلق."
    channel = FakeChannel(language="fa", speech=Speech(pound_at=2.0))  # none in Persian: the default greeting
    run(channel, box, tmp_path)
    assert channel.said[0] == PROMPTS["unavailable"]["fa"].format(mailbox="sales")

    greeting = tmp_path / "greeting.wav"
    write_wav(greeting, 1.0)
    channel = FakeChannel(speech=Speech(pound_at=2.0))
    run(channel, Mailbox(name="sales", greeting_file=greeting), tmp_path)
    assert channel.played == [greeting] and channel.kinds()[:3] == ["answer", "play", "record"]

    channel = FakeChannel(speech=Speech(pound_at=2.0))  # a greeting file that went missing: the default one
    run(channel, Mailbox(name="sales", greeting_file=tmp_path / "gone.wav"), tmp_path)
    assert channel.said[0].startswith("sales is not available.")


def test_a_key_during_the_greeting_skips_it_and_does_not_end_the_recording(tmp_path: Path) -> None:
    channel = FakeChannel(barge={"not available": "#"}, speech=Speech(pound_at=4.0))
    message = run(channel, BOB, tmp_path)
    assert message is not None and message.seconds == pytest.approx(4.0)


def test_pound_ends_the_recording(tmp_path: Path) -> None:
    channel = FakeChannel(speech=Speech(talk=10.0, pound_at=2.5))
    message = run(channel, BOB, tmp_path)
    assert message is not None and message.seconds == pytest.approx(2.5)


def test_max_seconds_ends_the_recording(tmp_path: Path) -> None:
    box = Mailbox(name="bob", max_seconds=5)
    channel = FakeChannel(speech=Speech(talk=30.0))
    message = run(channel, box, tmp_path)
    assert message is not None and message.seconds == pytest.approx(5.0)
    assert next(e for e in channel.events if e[0] == "record")[2] == 5.0
    with wave.open(message.path, "rb") as w:
        assert w.getnframes() == 5 * 8000
    assert channel.said[-1] == "Message saved. Goodbye."


def test_too_short_a_message_is_discarded(tmp_path: Path) -> None:
    store, notifier = FakeStore(), FakeNotifier()
    channel = FakeChannel(speech=Speech(pound_at=0.4))
    assert run(channel, BOB, tmp_path, store=store, notifier=notifier) is None
    assert store.rows == {} and notifier.calls == []
    assert wav_files(tmp_path) == []
    assert channel.said[-1] == PROMPTS["too_short"]["en"] and channel.kinds()[-1] == "hangup"

    box = Mailbox(name="bob", min_seconds=3)
    channel = FakeChannel(speech=Speech(pound_at=2.9))
    assert run(channel, box, tmp_path, store=store) is None and wav_files(tmp_path) == []


def test_caller_hanging_up_after_speaking_leaves_the_message_and_hears_nothing_more(tmp_path: Path) -> None:
    store, notifier = FakeStore(), FakeNotifier()
    channel = FakeChannel(speech=Speech(talk=4.0, hangup_at=4.0))
    message = run(channel, BOB, tmp_path, store=store, notifier=notifier)
    assert message is not None and message.seconds == pytest.approx(4.0)
    assert store.rows[1].sha256 == hashlib.sha256(Path(store.rows[1].path).read_bytes()).hexdigest()
    assert notifier.calls == [("default", "bob", 1, 0)]
    assert channel.kinds()[-2:] == ["record", "caller hung up"]
    assert channel.after_hangup == []


def test_caller_hanging_up_during_the_greeting_leaves_nothing(tmp_path: Path) -> None:
    store = FakeStore()
    channel = FakeChannel(hangup_during="not available")
    assert run(channel, BOB, tmp_path, store=store) is None
    assert store.rows == {} and wav_files(tmp_path) == [] and "record" not in channel.kinds()
    assert channel.after_hangup == []


def test_a_store_failure_is_not_acknowledged_and_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, notifier = FakeStore(fail_add=RuntimeError("database is locked")), FakeNotifier()
    channel = FakeChannel(speech=Speech(pound_at=3.0))
    with caplog.at_level(logging.INFO, logger="hatif.voicemail"):
        assert run(channel, BOB, tmp_path, store=store, notifier=notifier) is None
    assert PROMPTS["saved"]["en"] not in channel.said
    assert channel.said[-1] == PROMPTS["store_failed"]["en"] and channel.kinds()[-1] == "hangup"
    assert notifier.calls == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "could not be stored" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "database is locked" in str(errors[0].exc_info[1])
    kept = wav_files(tmp_path)  # kept on disk for recovery, and its path logged
    assert len(kept) == 1 and errors[0].fields["path"] == str(kept[0])  # type: ignore[attr-defined]


def test_two_messages_in_the_same_second_of_one_call_get_two_files(tmp_path: Path) -> None:
    store = FakeStore()
    for _ in range(2):
        assert run(FakeChannel(speech=Speech(pound_at=2.0)), BOB, tmp_path, store=store) is not None
    paths = [Path(m.path) for m in store.rows.values()]
    assert [p.name for p in paths] == ["20250301T101530Z-call-1.wav", "20250301T101530Z-call-1-2.wav"]
    assert store.rows[1].sha256 == hashlib.sha256(paths[0].read_bytes()).hexdigest()


def test_received_time_is_utc_whatever_the_clock_zone(tmp_path: Path) -> None:
    tehran = NOW.astimezone(timezone(timedelta(hours=3, minutes=30)))
    message = run(FakeChannel(speech=Speech(pound_at=2.0)), BOB, tmp_path, now=tehran)
    assert message is not None and message.received == NOW and message.received.utcoffset() == timedelta(0)
    assert Path(message.path).name.startswith("20250301T101530Z")


def test_hostile_call_ids_stay_inside_the_mailbox_folder(tmp_path: Path) -> None:
    store = FakeStore()
    for call_id in ("../../../etc/passwd", "a/b\\c@host;x", "..", "", "\x00\r\n"):
        message = run(FakeChannel(call_id=call_id, speech=Speech(pound_at=2.0)), BOB, tmp_path, store=store)
        assert message is not None
        path = Path(message.path)
        assert path.parent == tmp_path / "vm" / "default" / "bob"
        assert path.resolve().is_relative_to((tmp_path / "vm").resolve())
        assert message.call_id == call_id  # the record keeps the real Call-ID
    assert not (tmp_path / "etc").exists()


def test_an_unsafe_tenant_is_refused_without_a_file(tmp_path: Path) -> None:
    channel = FakeChannel(tenant="../other", speech=Speech(pound_at=2.0))
    store = FakeStore()
    assert run(channel, BOB, tmp_path, store=store) is None
    assert store.rows == {} and not (tmp_path / "other").exists() and wav_files(tmp_path) == []
    assert channel.said[-1] == PROMPTS["store_failed"]["en"]

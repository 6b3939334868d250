"""The owner's voicemail menu: PIN log-in without enumeration, counts, playing, keys, heard flags, MWI."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from voicemail_fakes import FakeChannel, FakeNotifier, FakeStore, write_wav

from hatif.store.records import VoicemailMessage
from hatif.voicemail import Mailbox, VoicemailSettings, check_messages
from hatif.voicemail.prompts import PROMPTS

BOB = Mailbox(name="bob", owner="bob", extension="1001", pin="1234")
SALES = Mailbox(name="sales", extension="500", pin="9876")
NOPIN = Mailbox(name="lobby", extension="600")
BOXES = (BOB, SALES, NOPIN)
T0 = datetime(2025, 3, 1, 10, 15, tzinfo=UTC)


def en(key: str) -> str:
    return PROMPTS[key]["en"]


def fill(store: FakeStore, tmp_path: Path) -> dict[str, VoicemailMessage]:
    """Bob's mailbox: two new messages (m1 older than m2) and one saved (s1), inserted out of order."""
    specs = [("m2", "+442071234567", None, T0 + timedelta(hours=2), False),
             ("s1", "1003", "Carol", T0 - timedelta(days=1), True),
             ("m1", "1002", "Alice", T0, False)]
    out = {}
    for label, caller, name, received, heard in specs:
        path = tmp_path / f"{label}.wav"
        write_wav(path, 1.0)
        message = VoicemailMessage(tenant="default", mailbox="bob", caller=caller, caller_name=name,
                                   received=received, seconds=1.0, path=str(path), sha256="0" * 64, heard=heard)
        message.id = store.add_voicemail(message)
        out[label] = message
    store.journal.clear()
    return out


def run(channel: FakeChannel, store: FakeStore, *, notifier: FakeNotifier | None = None, mailbox: str | None = None,
        zone: timezone = UTC) -> Mailbox | None:
    settings = VoicemailSettings(folder=Path("unused"))
    return asyncio.run(asyncio.wait_for(check_messages(channel, BOXES, store=store, settings=settings,
                                                       notifier=notifier, zone=zone, mailbox=mailbox), timeout=10))


@pytest.fixture
def store(tmp_path: Path) -> FakeStore:
    return FakeStore()


def test_owner_calling_from_their_phone_gives_only_the_pin(store: FakeStore, tmp_path: Path) -> None:
    fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", keys=["1234#", "#"])
    assert run(channel, store) == BOB
    assert channel.said[:2] == [en("enter_pin"), "You have 2 new messages and 1 saved message."]
    assert en("enter_mailbox") not in channel.said
    assert channel.said[-1] == en("goodbye") and channel.kinds()[-1] == "hangup"


def test_wrong_pin_three_times_ends_the_call(store: FakeStore, tmp_path: Path) -> None:
    fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", keys=["1111#", "2222#", "12345#", "1234#"])
    assert run(channel, store) is None
    assert channel.said == [en("enter_pin"), en("login_incorrect"), en("enter_pin"), en("login_incorrect"),
                            en("enter_pin"), en("login_failed")]
    assert channel.kinds()[-1] == "hangup" and list(channel.keys) == ["1234#"]
    assert store.journal == [] and channel.played == []


def test_unknown_and_known_mailboxes_get_the_same_questions(store: FakeStore, tmp_path: Path) -> None:
    """No enumeration: an outside caller hears the same prompts for a mailbox that exists and one that doesn't."""
    fill(store, tmp_path)
    transcripts = []
    for number in ("1001", "9999", "600"):  # Bob's, nobody's, a mailbox without a PIN
        channel = FakeChannel(caller_number="+15551234567", keys=[number, "4321"] * 3)
        assert run(channel, store) is None
        transcripts.append(channel.events)
    assert transcripts[0] == transcripts[1] == transcripts[2]
    assert transcripts[0][1][1] == en("enter_mailbox")


def test_a_mailbox_without_a_pin_cannot_be_opened_by_phone(store: FakeStore) -> None:
    channel = FakeChannel(caller_number="+15551234567", keys=["600", ""] * 3)
    assert run(channel, store) is None
    channel = FakeChannel(caller_number="+15551234567", keys=["600", "0000"] * 3)
    assert run(channel, store) is None


def test_outside_caller_opens_a_mailbox_by_its_number(store: FakeStore, tmp_path: Path) -> None:
    fill(store, tmp_path)
    channel = FakeChannel(caller_number="+15551234567", keys=["1001#", "1234#", "#"])
    assert run(channel, store) == BOB
    assert channel.said[:3] == [en("enter_mailbox"), en("enter_pin"), "You have 2 new messages and 1 saved message."]
    channel = FakeChannel(caller_number="+15551234567", keys=["500#", "9876#"])
    assert run(channel, store) == SALES
    assert "You have 0 new messages and 0 saved messages." in channel.said
    assert channel.said[-1] == en("goodbye")


def test_a_named_mailbox_asks_only_the_pin_and_a_pin_key_can_interrupt_the_prompt(store: FakeStore) -> None:
    channel = FakeChannel(caller_number="bob", barge={"PIN": "9"}, keys=["876#"])
    assert run(channel, store, mailbox="sales") == SALES
    assert channel.said[0] == en("enter_pin")
    channel = FakeChannel(caller_number="bob", keys=["1234#"] * 3)  # Bob's PIN does not open another mailbox
    assert run(channel, store, mailbox="sales") is None
    channel = FakeChannel(caller_number="bob", keys=["1234#"] * 3)  # nor one that does not exist
    assert run(channel, store, mailbox="nobody") is None
    assert channel.said[-1] == en("login_failed")


def test_messages_play_new_first_then_saved_with_caller_and_time(store: FakeStore, tmp_path: Path) -> None:
    m = fill(store, tmp_path)
    notifier = FakeNotifier()
    channel = FakeChannel(caller_number="bob", keys=["1234#", "", "", "", "#"])
    run(channel, store, notifier=notifier)
    assert channel.played == [Path(m["m1"].path), Path(m["m2"].path), Path(m["s1"].path)]
    intros = [s for s in channel.said if "message" in s and "from" in s]
    assert intros == [
        "New message 1, from Alice, 1 0 0 2, received on March 1 at 10:15.",
        "New message 2, from 4 4 2 0 7 1 2 3 4 5 6 7, received on March 1 at 12:15.",
        "Saved message 1, from Carol, 1 0 0 3, received on February 28 at 10:15.",
    ]
    # played to the end: heard, and the phone's lamp told each time
    assert all(r.heard for r in store.rows.values())
    assert store.journal == [("heard", m["m1"].id, True), ("heard", m["m2"].id, True)]
    assert notifier.calls == [("default", "bob", 1, 2), ("default", "bob", 0, 3)]
    assert en("no_more") in channel.said and channel.said[-1] == en("goodbye")


def test_times_are_spoken_in_the_given_zone(store: FakeStore, tmp_path: Path) -> None:
    fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", keys=["1234#", "#"])
    run(channel, store, zone=timezone(timedelta(hours=3, minutes=30)))
    assert "received on March 1 at 13:45." in channel.said[2]


def test_delete_save_next_repeat_previous_help(store: FakeStore, tmp_path: Path) -> None:
    m = fill(store, tmp_path)
    notifier = FakeNotifier()
    keys = ["1234#",
            "*",   # after m1: hear it again
            "0",   # after m1 again: help ...
            "6",   # ... then next
            "4",   # after m2: back to m1
            "7",   # after m1: delete it -> m2 comes next
            "9",   # after m2: save -> s1
            "5",   # after s1: not a key of the menu ...
            "#"]   # ... then hang up
    channel = FakeChannel(caller_number="bob", keys=keys)
    run(channel, store, notifier=notifier)
    assert channel.played == [Path(m[k].path) for k in ("m1", "m1", "m2", "m1", "m2", "s1")]
    assert en("help") in channel.said and en("deleted") in channel.said and en("marked_saved") in channel.said
    assert (en("invalid_key") + " " + en("help")) in channel.said
    assert sorted(store.rows) == [m["m2"].id, m["s1"].id] and not Path(m["m1"].path).exists()
    assert all(r.heard for r in store.rows.values())
    assert notifier.calls[-1] == ("default", "bob", 0, 2)
    assert ("delete", m["m1"].id) in store.journal
    assert channel.said[-1] == en("goodbye")


def test_a_key_during_a_message_skips_it_without_marking_it_heard(store: FakeStore, tmp_path: Path) -> None:
    m = fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", keys=["1234#", "#"], barge={"m1.wav": "6"})
    run(channel, store)
    assert channel.played == [Path(m["m1"].path), Path(m["m2"].path)]
    assert not store.rows[m["m1"].id].heard and store.rows[m["m2"].id].heard


def test_a_key_during_the_introduction_acts_at_once(store: FakeStore, tmp_path: Path) -> None:
    m = fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", keys=["1234#", "#"], barge={"New message 1": "7"})
    run(channel, store)
    assert m["m1"].id not in store.rows and channel.played == [Path(m["m2"].path)]


def test_previous_at_the_first_message_and_after_the_last(store: FakeStore, tmp_path: Path) -> None:
    m = fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", keys=["1234#", "4", "6", "6", "", "4", "#"])
    run(channel, store)
    assert en("first_message") in channel.said
    assert channel.played == [Path(m[k].path) for k in ("m1", "m1", "m2", "s1", "s1")]


def test_a_missing_file_is_announced_and_not_marked_heard(store: FakeStore, tmp_path: Path) -> None:
    m = fill(store, tmp_path)
    Path(m["m1"].path).unlink()
    channel = FakeChannel(caller_number="bob", keys=["1234#", "6", "#"])
    run(channel, store)
    assert (en("unplayable") + " " + en("after_message")) in channel.said
    assert not store.rows[m["m1"].id].heard and channel.played == [Path(m["m2"].path)]


def test_hanging_up_in_the_menu_ends_quietly(store: FakeStore, tmp_path: Path) -> None:
    m = fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", keys=["1234#"])  # then the caller hangs up after the first message
    assert run(channel, store) == BOB
    assert store.rows[m["m1"].id].heard and channel.after_hangup == []


def test_menu_in_arabic_and_persian(store: FakeStore, tmp_path: Path) -> None:
    fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", language="ar", keys=["1234#", "#"])
    run(channel, store)
    assert channel.said[:2] == [PROMPTS["enter_pin"]["ar"], "عدد الرسائل الجديدة لديك 2، وعدد الرسائل المحفوظة 1."]
    assert channel.said[2] == "رسالة جديدة رقم 1، من Alice، 1 0 0 2، وصلت في 1 مارس الساعة 10:15."
    store = FakeStore()
    fill(store, tmp_path)
    channel = FakeChannel(caller_number="bob", language="fa", keys=["1234#", "#"])
    run(channel, store)
    assert channel.said[1] == "شما 2 پیام جدید و 1 پیام ذخیره‌شده دارید."
    # 1 March 2025 is 11 Esfand 1403 in the Solar Hijri calendar
    assert channel.said[2] == "پیام جدید شماره‌ی 1، از Alice، 1 0 0 2، دریافت‌شده در 11 اسفند ساعت 10:15."
    assert channel.said[-1] == PROMPTS["goodbye"]["fa"]

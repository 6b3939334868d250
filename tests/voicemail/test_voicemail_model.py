"""Mailbox and settings validation, and the safety of names that become file paths."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from hatif.voicemail import Mailbox, VoicemailSettings
from hatif.voicemail.files import message_path, reserve, safe_token

WHEN = datetime(2025, 3, 1, 10, 15, 30, tzinfo=UTC)


def test_defaults() -> None:
    box = Mailbox(name="alice", owner="alice")
    assert (box.max_seconds, box.min_seconds, box.pin, box.greeting, box.recipients) == (120, 1, None, None,
                                                                                         ("alice",))
    assert Mailbox(name="sales").recipients == ()
    assert Mailbox(name="sales", owner="bob", notify=("carol", "dave")).recipients == ("carol", "dave")
    assert Mailbox(name="1001").numbers == ("1001",) and Mailbox(name="sales", extension="500").numbers == ("500",)
    assert VoicemailSettings().folder == Path("var/voicemail")
    assert "1234" not in repr(Mailbox(name="a", pin="1234"))


def test_pins() -> None:
    assert Mailbox(name="a", pin="0123").pin == "0123"
    for bad in ("123", "1234567890123", "12a4", "12 34"):
        with pytest.raises(ValidationError, match="4 to 12 digits"):
            Mailbox(name="a", pin=bad)
    with pytest.raises(ValidationError, match="in quotes"):
        Mailbox.model_validate({"name": "a", "pin": 83})  # YAML read 0123 as an octal number


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "..", "", "a\\b", "x" * 65, "a\x00", "sales team"])
def test_unsafe_mailbox_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="mailbox name"):
        Mailbox(name=name)


def test_limits_and_consistency() -> None:
    for field, value in (("max_seconds", 4), ("max_seconds", 601), ("min_seconds", -1)):
        with pytest.raises(ValidationError, match=field):
            Mailbox.model_validate({"name": "a", field: value})
    with pytest.raises(ValidationError, match="shorter than max_seconds"):
        Mailbox(name="a", min_seconds=10, max_seconds=10)
    with pytest.raises(ValidationError, match="not both"):
        Mailbox(name="a", greeting="hi", greeting_file=Path("g.wav"))
    with pytest.raises(ValidationError, match="de"):
        Mailbox.model_validate({"name": "a", "greeting": {"de": "Hallo"}})
    with pytest.raises(ValidationError, match="extra"):
        Mailbox.model_validate({"name": "a", "pinn": "1234"})
    with pytest.raises(ValidationError):
        Mailbox(name="a", display_name="Sales\r\nX: y")
    box = Mailbox(name="a")
    with pytest.raises(ValidationError):
        box.name = "b"
    greeting = Mailbox(name="a", greeting={"en": "Hello", "fa": "سلام"})
    assert (greeting.greeting_text("fa"), greeting.greeting_text("ar")) == ("سلام", None)
    assert Mailbox(name="a", greeting="Hello").greeting_text("ar") == "Hello"


def test_message_paths() -> None:
    folder = Path("/srv/vm")
    assert message_path(folder, "acme", "sales", WHEN, "abc@10.0.0.1") == Path(
        "/srv/vm/acme/sales/20250301T101530Z-abc_10_0_0_1.wav")
    for tenant, mailbox in (("../x", "sales"), ("acme", "../../root"), ("acme", "a/b"), ("", "a")):
        with pytest.raises(ValueError):
            message_path(folder, tenant, mailbox, WHEN, "c")
    with pytest.raises(ValueError, match="timezone-aware"):
        message_path(folder, "acme", "sales", WHEN.replace(tzinfo=None), "c")


@pytest.mark.parametrize(("call_id", "token"), [
    ("../../etc/passwd", "etc_passwd"), ("..", "call"), ("", "call"), ("a\r\nb", "a_b"),
    ("x" * 200, "x" * 64), ("3848276298220188511@atlanta.example.com", "3848276298220188511_atlanta_example_com"),
])
def test_call_ids_become_safe_tokens(call_id: str, token: str) -> None:
    assert safe_token(call_id) == token


def test_reserve_never_reuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "t" / "m" / "x.wav"
    first, second = reserve(path), reserve(path)
    assert (first, second) == (path, path.with_name("x-2.wav")) and first.exists() and second.exists()

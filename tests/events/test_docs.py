"""docs/events.md lists every event class, so the page cannot fall behind the model."""

from __future__ import annotations

from pathlib import Path

from hatif.events import event_types

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_every_event_is_documented_with_its_class() -> None:
    text = DOC.read_text()
    missing = [f"{name} ({cls.__name__})" for name, cls in event_types().items()
               if f"`{name}` ({cls.__name__})" not in text]
    assert not missing, f"docs/events.md lacks: {', '.join(missing)}"

"""Where voicemail messages live on disk: `<folder>/<tenant>/<mailbox>/<UTC time>-<call id>.wav`.

Tenant and mailbox names come from the configuration and must already be safe single path components; the
call id comes from the network (a SIP Call-ID may hold `/`, `..`, `@` and anything else), so it is reduced to
a safe token. The final path is checked to lie under the folder all the same.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from .model import safe_name

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_ATTEMPTS = 100
"""How many `-N` suffixes `reserve` tries before giving up (two messages in one second of one call)."""


def safe_token(text: str, limit: int = 64) -> str:
    """`text` with every run of characters other than letters, digits, `_` and `-` made one `_` (never empty)."""
    token = _UNSAFE.sub("_", text).strip("_")[:limit]
    return token or "call"


def message_path(folder: Path, tenant: str, mailbox: str, received: datetime, call_id: str) -> Path:
    """The file for a message received at `received` on call `call_id`; ValueError for an unsafe tenant or
    mailbox name (they are configuration, so that is a bug, not something to repair)."""
    if received.tzinfo is None:
        raise ValueError("the received time must be timezone-aware")
    stamp = received.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = folder / safe_name(tenant, "a tenant name") / safe_name(mailbox)
    path = directory / f"{stamp}-{safe_token(call_id)}.wav"
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{path} is not under the voicemail folder {folder}")
    return path


def reserve(path: Path) -> Path:
    """Create `path` (and its folders) empty and exclusively, or `<stem>-2.wav`, `-3`... when it exists, so
    two messages never share a file. Blocking: run it in a thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_ATTEMPTS + 1):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            with candidate.open("xb"):
                return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: {MAX_ATTEMPTS} messages with this name already exist")


def remove(path: Path) -> None:
    """Delete a message file; a file already gone is fine. Blocking: run it in a thread."""
    path.unlink(missing_ok=True)

"""The surface of a call that applications (IVR flows, voicemail, queues, the dialer, the web) program against.

`hatif.calls.control` implements it over real SIP legs and the media engine; tests of applications may
implement it with a fake. Everything here is awaited on Hatif's event loop. A method called on a channel
whose caller has hung up raises `Hangup`, so an application's coroutine unwinds at once when the caller
goes away, wherever it was waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..errors import CallError

Samples = npt.NDArray[np.int16]
"""8 kHz mono 16-bit audio, as the media engine plays it."""

Outcome = Literal["answered", "busy", "no_answer", "unavailable", "failed", "cancelled"]
"""How an attempt to reach someone ended (`answered` also when the bridged call has since ended)."""


EndedBy = Literal["terminator", "max_length", "silence", "hangup"]
"""Why a recording stopped."""


class Hangup(CallError):
    """The caller hung up (or the call was ended) while an application was working on it."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """A recording made on one leg (voicemail, a caller's name): mono 8 kHz 16-bit WAV."""

    path: Path
    seconds: float
    sha256: str
    ended_by: EndedBy


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One state change of a call: the one event model's unit (kinds listed in `hatif.calls.control`)."""

    kind: str
    call_id: str
    time: float
    tenant: str = "default"
    leg_id: str | None = None
    data: Mapping[str, object] = field(default_factory=dict)


@runtime_checkable
class Channel(Protocol):
    """The caller's side of a call, as an application sees it.

    `language` starts as the caller's (the user's configured language, else the tenant's default) and may
    be changed by the application (the IVR's choose-language node); prompts spoken with `say` use it.
    `variables` is the call's scratch space (IVR inputs, HTTP lookup results), kept with the call record.
    """

    tenant: str
    caller_number: str  # the caller's user name, extension or outside number
    caller_name: str | None
    called_number: str  # the number the caller dialed
    language: str
    variables: dict[str, str]

    @property
    def call_id(self) -> str: ...

    @property
    def ended(self) -> bool: ...

    async def answer(self) -> None:
        """Answer the call if it is not answered yet (idempotent)."""

    async def play(self, audio: Samples | Path, *, interrupt: bool = False) -> str | None:
        """Play audio (8 kHz samples, or a WAV file of any rate); with `interrupt`, a digit stops it and is
        returned (and not kept for a following `collect`); otherwise returns None when it has played."""

    async def say(self, text: str, *, language: str | None = None, interrupt: bool = False) -> str | None:
        """Speak `text` with espeak-ng in `language` (the channel's language by default); as `play`."""

    async def collect(self, *, max_digits: int = 1, timeout: float = 5.0, inter_digit: float = 3.0,
                      terminators: str = "#") -> str:
        """Collect up to `max_digits` digits: `timeout` for the first digit, `inter_digit` between the next
        ones; a terminator ends early and is not returned. Returns "" when nothing was pressed. Digits
        pressed before the call (for example during a prompt played without `interrupt`) are kept."""

    async def record(self, path: Path, *, max_seconds: float = 120.0, terminators: str = "#",
                     beep: bool = True, silence_seconds: float | None = None) -> Recorded:
        """Record what the caller says into `path` (after a beep), until a terminator, `max_seconds`,
        `silence_seconds` of silence, or the caller hangs up (then the recording is still kept and returned:
        a voicemail is saved when the caller hangs up after speaking)."""

    async def hangup(self, cause: str = "normal") -> None:
        """End the call (BYE, or a final response when not answered yet)."""

    async def connect(self, target: str, *, timeout: float | None = None, caller_id: str | None = None,
                      music: bool = False) -> Outcome:
        """Reach `target` and bridge the caller to it: `user:NAME`, `extension:1234`, `endpoint:NAME/NUMBER`
        (an outside number through a trunk) or a dialable number routed by the tenant's dial plan. The caller
        hears ringback (or music with `music`) meanwhile. Returns when the attempt failed (the caller is still
        here: the application may try something else) or, when answered, once the bridged call has ended."""


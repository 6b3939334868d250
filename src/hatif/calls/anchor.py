"""Media anchoring for the B2BUA: both legs of every call send their RTP to Hatif.

The B2BUA calls this at each SDP it passes on. An offer from one side is rewritten so that the other side
sends to Hatif's leg facing it; the answer is rewritten the same way back; once both sides are known the two
legs are bridged (and recorded when the configuration says so). Calls that Hatif answers itself (the echo
test, a spoken greeting) get an SDP answer of Hatif's own and an application run on their one leg.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..media.engine import Bridge, Leg, MediaEngine
from ..media.prompts import PromptCache
from ..sip.sdp import SUPPORTED, SessionDescription, make_answer, negotiated, with_media_address

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class AnchoredCall:
    call_id: str
    legs: dict[str, Leg] = field(default_factory=dict)  # "a" faces the caller, "b" the callee
    bridge: Bridge | None = None
    recording: Path | None = None
    digits: list[str] = field(default_factory=list)
    bridged_at: float | None = None


@dataclass(frozen=True, slots=True)
class FinishedMedia:
    """What a call's media left behind: its recording (path, SHA-256, seconds) and the digits heard."""

    call_id: str
    recording: Path | None
    sha256: str | None
    seconds: float
    digits: tuple[str, ...]


class MediaAnchor:
    """Owns the legs of every anchored call; one per Hatif, on the engine's loop."""

    def __init__(self, engine: MediaEngine, prompts: PromptCache | None = None, record: bool = False,
                 greeting: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.prompts = prompts
        self.record = record
        self.greeting = greeting or {}
        self.calls: dict[str, AnchoredCall] = {}
        self.finished: deque[FinishedMedia] = deque(maxlen=1000)  # the latest calls, for the API and tests
        self.session_id = secrets.randbelow(2**31)

    def _leg(self, call: AnchoredCall, side: str) -> Leg:
        leg = call.legs.get(side)
        if leg is None:
            leg = self.engine.open_leg()
            call.legs[side] = leg
        return leg

    def _rewrite(self, call: AnchoredCall, facing: str, description: SessionDescription) -> bytes:
        """The SDP to send toward `facing`, pointing at the leg that faces it."""
        leg = self._leg(call, facing)
        return with_media_address(description, self.engine.settings.sdp_address, leg.local_port).serialize()

    def offer(self, call_id: str, from_side: str, body: bytes) -> bytes:
        """An offer from `from_side` ("a" or "b"): note its address, return it rewritten for the other side."""
        call = self.calls.setdefault(call_id, AnchoredCall(call_id))
        description = SessionDescription.parse(body)
        self._learn(call, from_side, description)
        return self._rewrite(call, "b" if from_side == "a" else "a", description)

    def answer(self, call_id: str, from_side: str, body: bytes) -> bytes:
        """An answer from `from_side`: note it, bridge the legs, return it rewritten for the other side."""
        call = self.calls.setdefault(call_id, AnchoredCall(call_id))
        description = SessionDescription.parse(body)
        self._learn(call, from_side, description)
        other = "b" if from_side == "a" else "a"
        # The codec the answer chose applies to both legs (the offer/answer is end to end).
        chosen = negotiated(description)
        for leg in call.legs.values():
            leg.payload_type = chosen.payload_type
            leg.dtmf_pt = chosen.dtmf_payload_type
        out = self._rewrite(call, other, description)
        if call.bridge is None and "a" in call.legs and "b" in call.legs:
            if self.record:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                call.recording = self.engine.settings.recordings / f"{stamp}-{call_id}.wav"
            call.bridge = self.engine.bridge(call.legs["a"], call.legs["b"], call.recording)
            call.bridged_at = self.engine.loop.time()
        return out

    def _learn(self, call: AnchoredCall, side: str, description: SessionDescription) -> None:
        n = negotiated(description)
        leg = self._leg(call, side)
        leg.set_remote(n.address, n.port, n.payload_type, n.dtmf_payload_type)

    def answer_locally(self, call_id: str, offer_body: bytes) -> bytes:
        """Hatif answers the call itself: one leg facing the caller, and our own SDP answer."""
        call = self.calls.setdefault(call_id, AnchoredCall(call_id))
        offer = SessionDescription.parse(offer_body)
        leg = self._leg(call, "a")
        answer = make_answer(offer, self.engine.settings.sdp_address, leg.local_port, self.session_id,
                                 1, supported=SUPPORTED)
        n = negotiated(answer)
        remote = negotiated(offer)
        leg.set_remote(remote.address, remote.port, n.payload_type, n.dtmf_payload_type)
        return answer.serialize()

    def run_app(self, call_id: str, app: str, language: str, hang_up: Callable[[], None]) -> None:
        """Start an application on a call Hatif answered: `echo`, or `greeting` (spoken, then hang up)."""
        call = self.calls.get(call_id)
        if call is None or "a" not in call.legs:
            return
        leg = call.legs["a"]
        leg.listen_dtmf(lambda d: self._digit(call, d.digit))
        if app == "echo":
            self.engine.echo(leg)
            return
        if app == "greeting":
            if self.prompts is None:
                hang_up()
                return
            text = self.greeting.get(language) or self.greeting.get("en", "Welcome to Hatif.")
            samples = self.prompts.speak(text, language)  # cached after the first call
            leg.play(samples, on_done=hang_up)
            return
        log.warning("unknown application", extra={"fields": {"app": app}})
        hang_up()

    def _digit(self, call: AnchoredCall, digit: str) -> None:
        call.digits.append(digit)
        log.info("dtmf", extra={"fields": {"call": call.call_id, "digit": digit}})

    def end(self, call_id: str) -> None:
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        sha: str | None = None
        seconds = 0.0
        if call.bridge is not None:
            recorder = call.bridge.recorder
            sha = call.bridge.close()
            if recorder is not None:
                seconds = recorder.duration
                log.info("recording closed", extra={"fields": {
                    "call": call_id, "path": str(call.recording), "seconds": round(seconds, 2), "sha256": sha}})
        for leg in call.legs.values():
            leg.close()
        self.finished.append(FinishedMedia(call_id, call.recording, sha, seconds, tuple(call.digits)))

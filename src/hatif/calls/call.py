"""A call: the caller's leg and every leg Hatif placed for it, the bridges between them, and the async API.

`Call` implements `hatif.calls.api.Channel` for its caller (answer, play, say, collect, record, connect,
hang up) and adds what supervisors, queues and agents need: bridge two legs, hold and resume with music,
blind and attended transfer, conferences. Each state change is an event (`Call.emit`, into its host's log).

Who is bridged with whom, who waits aside while an agent consults, who is being transferred and who sits in
a conference is the call's state machine (`calls.state.CallMachine`, legs named by their ids); `Call` is the
shell that feeds it (the API's requests, what its legs report as `LegListener`) and executes its commands in
`_run`'s one `match`: media bridges and recordings, music and ringback, hanging legs up, conference mixes.
It reaches its owner only through `CallHost`, the few things call control provides.

How a call ends: when the caller's leg ends, every other leg is hung up; when a leg bridged to the caller
ends, the caller is left alone (the application that connected them decides what follows: a direct
extension call hangs up, an IVR may offer voicemail). When the last leg ends the call's record is written.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..media import prompts as tones
from ..media.engine import Bridge, MediaEngine, Mix
from ..media.prompts import PromptCache
from ..store.records import CallRecord, LegRecord
from .api import EndedBy, Hangup, Outcome, Recorded, Samples
from .leg import LegState, SipLeg
from .state import (
    BridgeLegs,
    CallCommand,
    CallMachine,
    CallOver,
    Changed,
    Emit,
    HangupLeg,
    JoinRoom,
    LeaveRoom,
    LegPhase,
    PlayMusic,
    PlayRingback,
    Refused,
    StopPlaying,
    Unbridge,
)

log = logging.getLogger(__name__)

RINGBACK = np.concatenate([tones.tone(425.0, 1000, 0.2), tones.silence(4000)])  # ITU-T E.180 ringing tone


def ringback() -> Samples:
    return RINGBACK


@dataclass(eq=False)
class Conference:
    """A named room: every member hears every other member (mixed on the engine's clock)."""

    name: str
    tenant: str
    members: list[SipLeg] = field(default_factory=list)
    mix: Mix | None = None


class CallHost(Protocol):
    """What a call needs of its owner (`calls.control.CallControl`): the loop, media and prompts, placing
    legs, the event log, conference rooms, and being told what ended."""

    loop: asyncio.AbstractEventLoop
    media: MediaEngine
    prompts: PromptCache
    record: bool
    recordings: Path
    conferences: dict[tuple[str, str], Conference]

    def emit(self, call: Call, kind: str, leg: SipLeg | None = None, **data: object) -> None: ...
    def dial(self, call: Call, target: str, *, timeout: float | None = None, caller_id: str | None = None,
             prefer: str | None = None) -> SipLeg | Outcome: ...
    def spawn(self, coro: Any) -> asyncio.Task[Any]: ...
    def conference(self, tenant: str, name: str) -> Conference: ...
    def remix(self, room: Conference) -> None: ...
    def detach(self, leg: SipLeg) -> None: ...
    def caller_answered(self, leg: SipLeg) -> None: ...
    def session_refresh_failed(self, leg: SipLeg, status: int) -> None: ...
    def call_ended(self, call: Call) -> None: ...


class Call:
    """One call, from the caller's INVITE (or an originated call) to the last leg's end."""

    def __init__(self, control: CallHost, tenant: str, caller_number: str, caller_name: str | None,
                 called_number: str, language: str) -> None:
        self.control = control
        self.loop = control.loop  # the call's clock: loop.time(), as its legs'
        self.id = secrets.token_hex(8)
        self.tenant = tenant
        self.caller_number = caller_number
        self.caller_name = caller_name
        self.called_number = called_number
        self.language = language
        self.variables: dict[str, str] = {}
        self.caller: SipLeg | None = None
        self.legs: list[SipLeg] = []
        self.machine = CallMachine()
        self._by_id: dict[str, SipLeg] = {}
        self.bridges: dict[SipLeg, Bridge] = {}  # the media bridge of each bridged leg (both ways)
        self._bridged_with: dict[SipLeg, SipLeg] = {}  # the other end of each media bridge
        self.recordings: list[tuple[Path, Bridge]] = []
        self.recording: Path | None = None
        self.recording_sha256: str | None = None
        self.recorded_seconds = 0.0
        self.outcome: str | None = None  # set by applications ("voicemail", "ivr" ...); else derived
        self.failure: tuple[int, str] | None = None  # the last outbound attempt's final status and reason
        self.talk_seconds = 0.0
        self._bridged_at: dict[SipLeg, float] = {}
        self._changed: asyncio.Future[None] | None = None  # set when who-is-bridged-with-whom changes
        self.started = self.loop.time()
        self.wall_started = time.time()
        self.finished = False
        self.digits_heard: list[str] = []
        self.conference: Conference | None = None

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.caller_number}->{self.called_number}>"

    def add_leg(self, leg: SipLeg, *, caller: bool = False) -> None:
        """A leg of this call (the caller's, or one placed for it), known to the machine by its id."""
        self.legs.append(leg)
        self._by_id[leg.id] = leg
        self.machine.add_leg(leg.id, leg.party, caller=caller)
        if caller:
            self.caller = leg

    @property
    def partner(self) -> dict[SipLeg, SipLeg]:
        """Who each leg is bridged with (both ways), as the machine has it."""
        by_id = self._by_id
        return {by_id[a]: by_id[b] for a, b in self.machine.partner.items()}

    @property
    def held_aside(self) -> dict[SipLeg, SipLeg]:
        """Agent -> the party waiting with music while the agent consults."""
        by_id = self._by_id
        return {by_id[a]: by_id[b] for a, b in self.machine.held_aside.items()}

    def partner_of(self, leg: SipLeg) -> SipLeg | None:
        other = self.machine.partner.get(leg.id)
        return None if other is None else self._by_id[other]

    def emit(self, kind: str, leg: SipLeg | None = None, **data: object) -> None:
        """A state change of this call, for the event log."""
        self.control.emit(self, kind, leg, **data)

    # -- executing the machine's commands -------------------------------------------------------------

    def _run(self, commands: list[CallCommand]) -> Refused | None:
        """Carry out what the machine said, in order; the refusal, when it refused."""
        refused: Refused | None = None
        by_id = self._by_id
        for command in commands:
            match command:
                case BridgeLegs(a=a, b=b, record=record):
                    self._bridge_media(by_id[a], by_id[b], record)
                case Unbridge(leg=leg):
                    self._unbridge_media(by_id[leg])
                case PlayMusic(leg=leg):
                    if not by_id[leg].ended:
                        by_id[leg].media.play(tones.music_on_hold(), loop=True)
                case PlayRingback(leg=leg):
                    if not by_id[leg].ended:
                        by_id[leg].media.play(ringback(), loop=True)
                case StopPlaying(leg=leg):
                    by_id[leg].media.stop_playing()
                case HangupLeg(leg=leg, cause=cause):
                    by_id[leg].hangup(cause)
                case JoinRoom(leg=leg, room=name):
                    self._join_room(by_id[leg], name)
                case LeaveRoom(leg=leg, room=name):
                    self._leave_room(by_id[leg], name)
                case Emit(kind=kind, data=data, leg=leg):
                    self.emit(kind, None if leg is None else by_id[leg], **data)
                case Changed():
                    self._signal()
                case Refused():
                    refused = command
                case CallOver():
                    self._finish()
        return refused

    # -- Channel: the caller's side -------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.id

    @property
    def ended(self) -> bool:
        return self.caller is None or self.caller.ended

    def _leg(self) -> SipLeg:
        caller = self.caller
        if caller is None or caller.ended:
            raise Hangup(self.id)
        return caller

    async def answer(self) -> None:
        leg = self._leg()
        leg.listen()
        leg.answer()

    async def play(self, audio: Samples | Path, *, interrupt: bool = False) -> str | None:
        leg = self._leg()
        leg.answer()
        samples = audio if isinstance(audio, np.ndarray) else await self.control.prompts.wav_async(audio)
        return await self.play_to(leg, samples, interrupt=interrupt)

    async def say(self, text: str, *, language: str | None = None, interrupt: bool = False) -> str | None:
        leg = self._leg()
        leg.answer()
        samples = await self.control.prompts.speak_async(text, language or self.language)
        return await self.play_to(leg, samples, interrupt=interrupt)

    async def play_to(self, leg: SipLeg, samples: Samples, *, interrupt: bool = False) -> str | None:
        """Play to any leg of the call; with `interrupt` a digit pressed stops it and is returned."""
        if leg.ended:
            raise Hangup(self.id)
        leg.listen()
        loop = self.loop
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        if interrupt and leg.digits:
            return leg.digits.popleft()  # typed ahead: the prompt is skipped
        leg.media.play(samples, on_done=finished)
        waits: list[asyncio.Future[Any]] = [done, leg.finished]
        digit_task: asyncio.Task[str | None] | None = None
        if interrupt:
            digit_task = loop.create_task(leg.next_digit(len(samples) / 8000 + 5.0))
            waits.append(digit_task)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if digit_task is not None and not digit_task.done():
                digit_task.cancel()
        if leg.ended:
            raise Hangup(self.id)
        if digit_task is not None and digit_task.done() and not digit_task.cancelled():
            digit = digit_task.result()
            if digit is not None:
                leg.media.stop_playing()
                return digit
        if not done.done():
            leg.media.stop_playing()
        return None

    async def collect(self, *, max_digits: int = 1, timeout: float = 5.0, inter_digit: float = 3.0,
                      terminators: str = "#") -> str:
        leg = self._leg()
        leg.answer()
        got = ""
        wait = timeout
        while len(got) < max_digits:
            digit = await leg.next_digit(wait)
            if leg.ended:
                raise Hangup(self.id)
            if digit is None:
                break
            if digit in terminators:
                break
            got += digit
            wait = inter_digit
        self.digits_heard.extend(got)
        return got

    async def record(self, path: Path, *, max_seconds: float = 120.0, terminators: str = "#",
                     beep: bool = True, silence_seconds: float | None = None) -> Recorded:
        leg = self._leg()
        leg.answer()
        if beep:
            await self.play_to(leg, tones.beep())
        leg.digits.clear()
        engine = self.control.media
        recorder = engine.record_leg(leg.media, path)
        self.control.emit(self, "record.started", leg, path=str(path))
        loop = self.loop
        deadline = loop.time() + max_seconds
        ended_by: EndedBy = "max_length"
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            digit = await leg.next_digit(min(left, 0.1))
            if leg.ended:
                ended_by = "hangup"
                break
            if digit is not None and digit in terminators:
                ended_by = "terminator"
                break
            if (silence_seconds is not None and recorder.voiced_frames > 0
                    and recorder.quiet_frames * 0.02 >= silence_seconds):
                ended_by = "silence"
                break
        sha = engine.stop_recording_leg(leg.media) or recorder.close()
        self.control.emit(self, "record.done", leg, path=str(path), seconds=recorder.duration, ended_by=ended_by)
        return Recorded(path, recorder.duration, sha, ended_by)

    async def hangup(self, cause: str = "normal") -> None:
        for leg in list(self.legs):
            leg.hangup(cause)

    # -- reaching someone -----------------------------------------------------------------------------

    async def connect(self, target: str, *, timeout: float | None = None, caller_id: str | None = None,
                      music: bool = False) -> Outcome:
        caller = self._leg()
        leg = self.control.dial(self, target, timeout=timeout, caller_id=caller_id, prefer=caller.codec)
        if isinstance(leg, str):
            return leg
        return await self.connect_leg(caller, leg, music=music)

    async def connect_leg(self, caller: SipLeg, leg: SipLeg, *, music: bool = False) -> Outcome:
        """Bridge `caller` to a leg already placed, once it answers (ringback or music meanwhile)."""
        if caller.state is LegState.ANSWERED:
            caller.media.play(tones.music_on_hold() if music else ringback(), loop=True)
        await first(leg.answered, leg.finished, caller.finished)
        if caller.ended:
            leg.hangup("cancelled")
            return "cancelled"
        if leg.state is not LegState.ANSWERED:
            caller.media.stop_playing()
            if leg.status is not None:
                self.failure = (leg.status, leg.reason or "")
            return not_answered(leg)
        caller.answer()
        caller.media.stop_playing()
        self.bridge(caller, leg)
        await self.wait_bridged(caller)
        return "answered"

    def dial(self, target: str, *, timeout: float | None = None, caller_id: str | None = None) -> SipLeg | Outcome:
        """Place a new leg for this call (not bridged): the leg, or the outcome when it cannot be placed."""
        caller = self.caller
        return self.control.dial(self, target, timeout=timeout, caller_id=caller_id,
                                 prefer=caller.codec if caller is not None else None)

    async def wait_bridged(self, leg: SipLeg) -> None:
        """Wait while `leg` is bridged to someone (across transfers), until it or its last partner ends."""
        machine = self.machine
        while not leg.ended:
            partner = self.partner_of(leg)
            if partner is None and not machine.transferring and leg.id not in machine.held_aside.values():
                return
            changed = self._changed = self.loop.create_future()
            waits: list[asyncio.Future[Any]] = [leg.finished, changed]
            if partner is not None:
                waits.append(partner.finished)
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)

    # -- bridges --------------------------------------------------------------------------------------

    def bridge(self, a: SipLeg, b: SipLeg, record: bool | None = None) -> Bridge | None:
        """Join two legs' audio (recorded when the configuration says so: `a` left, `b` right); None when
        the machine refuses (a leg ended)."""
        self._run(self.machine.bridge(a.id, b.id, self.loop.time(), record))
        return self.bridges.get(a) if self._bridged_with.get(a) is b else None

    def unbridge(self, leg: SipLeg) -> None:
        self._run(self.machine.unbridge(leg.id, self.loop.time()))

    def _bridge_media(self, a: SipLeg, b: SipLeg, record: bool | None) -> None:
        path: Path | None = None
        if record if record is not None else self.control.record:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            n = len(self.recordings)
            name = f"{stamp}-{self.id}.wav" if n == 0 else f"{stamp}-{self.id}-{n + 1}.wav"
            path = self.control.recordings / self.tenant / name
        bridge = self.control.media.bridge(a.media, b.media, path)
        if path is not None:
            self.recordings.append((path, bridge))
            if self.recording is None:
                self.recording = path
        self.bridges[a] = self.bridges[b] = bridge
        self._bridged_with[a], self._bridged_with[b] = b, a
        self._bridged_at[a] = self.loop.time()
        self.emit("call.bridged", a, other=b.id, party=b.party)

    def _signal(self) -> None:
        changed = self._changed
        if changed is not None and not changed.done():
            changed.set_result(None)

    def _unbridge_media(self, leg: SipLeg) -> None:
        other = self._bridged_with.pop(leg, None)
        bridge = self.bridges.pop(leg, None)
        if other is not None:
            self._bridged_with.pop(other, None)
            self.bridges.pop(other, None)
            start = self._bridged_at.pop(leg, None) or self._bridged_at.pop(other, None)
            if start is not None:
                self.talk_seconds += self.loop.time() - start
        if bridge is not None:
            sha = bridge.close()
            for path, b in self.recordings:
                if b is bridge and path == self.recording and sha:
                    self.recording_sha256 = sha
                    if bridge.recorder is not None:
                        self.recorded_seconds = bridge.recorder.duration
            self.emit("call.unbridged", leg, other=other.id if other is not None else None)

    # -- hold, transfer, conference -------------------------------------------------------------------

    async def hold(self, leg: SipLeg, music: bool = True) -> bool:
        """Put a party on hold: re-INVITE with sendonly (RFC 3264 §8.4) and music on hold to it."""
        if leg.ended or leg.held:
            return False
        accepted = await leg.hold()
        if leg.held:  # held even when the party refused: Hatif's intent stands, a resume is still possible
            self._run(self.machine.hold(leg.id, self.loop.time(), music))
        return accepted

    async def resume(self, leg: SipLeg) -> bool:
        if leg.ended or not leg.held:
            return False
        self._run(self.machine.resume(leg.id, self.loop.time()))
        return await leg.resume()

    def on_remote_hold(self, leg: SipLeg, held: bool) -> None:
        """A party put us on hold from its phone: the one it talks to hears music meanwhile."""
        self._run(self.machine.party_hold(leg.id, held, self.loop.time()))

    async def transfer(self, leg: SipLeg, target: str, *, timeout: float | None = None) -> Outcome:
        """Blind transfer: `leg`'s partner is released and `leg` is connected to `target` instead."""
        machine, loop = self.machine, self.loop
        if self._run(machine.transfer(leg.id, target, loop.time())) is not None:
            return "failed"
        new = self.control.dial(self, target, timeout=timeout, prefer=leg.codec)
        if isinstance(new, str):
            self._run(machine.target_failed(leg.id, loop.time()))
            return new
        await first(new.answered, new.finished, leg.finished)
        if new.state is LegState.ANSWERED and not leg.ended:
            self._run(machine.target_answered(leg.id, new.id, loop.time()))
            return "answered"
        self._run(machine.target_failed(leg.id, loop.time(), new.id))
        return "cancelled" if leg.ended else not_answered(new)

    async def consult(self, agent: SipLeg, target: str, *, timeout: float | None = None) -> SipLeg | Outcome:
        """Attended transfer, first step: the agent's partner waits with music; the agent talks to `target`."""
        machine, loop = self.machine, self.loop
        if self._run(machine.consult(agent.id, loop.time())) is not None:
            return "failed"
        new = self.control.dial(self, target, timeout=timeout, prefer=agent.codec)
        if isinstance(new, str):
            self._run(machine.consult_failed(agent.id, loop.time()))
            return new
        await first(new.answered, new.finished, agent.finished)
        if new.state is LegState.ANSWERED and not agent.ended:
            self._run(machine.consult_answered(agent.id, new.id, target, loop.time()))
            return new
        self._run(machine.consult_failed(agent.id, loop.time(), new.id))
        return not_answered(new)

    def complete_transfer(self, agent: SipLeg) -> bool:
        """Attended transfer, done: the waiting party and the consulted one talk; the agent leaves."""
        return self._run(self.machine.complete(agent.id, self.loop.time())) is None

    def cancel_consult(self, agent: SipLeg) -> bool:
        """Attended transfer, abandoned: the consulted party is released, the agent is back with the caller."""
        return self._run(self.machine.cancel_consult(agent.id, self.loop.time())) is None

    def join_conference(self, leg: SipLeg, name: str) -> Conference:
        """Put a leg in a named conference of this tenant (created on first join)."""
        self._run(self.machine.join(leg.id, name, self.loop.time()))
        return self.control.conferences.get((self.tenant, name)) or Conference(name, self.tenant)

    def leave_conference(self, leg: SipLeg) -> None:
        self._run(self.machine.leave(leg.id, self.loop.time()))

    def _join_room(self, leg: SipLeg, name: str) -> None:
        room = self.control.conference(self.tenant, name)
        if leg not in room.members:
            room.members.append(leg)
        self.control.remix(room)
        self.emit("conference.joined", leg, conference=name, members=len(room.members))

    def _leave_room(self, leg: SipLeg, name: str) -> None:
        room = self.control.conferences.get((self.tenant, name))
        if room is not None and leg in room.members:
            room.members.remove(leg)
            self.control.remix(room)
            self.emit("conference.left", leg, conference=room.name, members=len(room.members))

    # -- what the legs report (LegListener) -----------------------------------------------------------

    def on_leg_progress(self, leg: SipLeg) -> None:
        """An outbound leg rings (or has early media) while the caller is not answered: tell the caller."""
        caller = self.caller
        if caller is None or leg is caller or caller.phase not in (LegPhase.CALLING, LegPhase.RINGING,
                                                                   LegPhase.EARLY):
            return
        if leg.phase is LegPhase.EARLY:
            if self.partner_of(caller) is not leg:
                self.bridge(caller, leg, record=False)
            caller.ring(early_media=True)
        elif caller.phase is LegPhase.CALLING:
            caller.ring()

    def on_leg_answered(self, leg: SipLeg) -> None:
        if leg is self.caller:
            self.control.caller_answered(leg)

    def on_leg_ended(self, leg: SipLeg) -> None:
        self.control.detach(leg)
        for key in ("dropped_source", "dropped_auth"):  # refused packets, in the CDR (and so the API)
            if leg.rtp.get(key):
                self.variables[f"rtp_{key}"] = str(int(self.variables.get(f"rtp_{key}", "0")) + leg.rtp[key])
        self._run(self.machine.leg_ended(leg.id, leg.cause, self.loop.time()))

    def on_refer(self, leg: SipLeg, target: str) -> bool:
        """A phone transfers its party blind (REFER, RFC 3515): taken (the leg answers 202) when it has a
        party, who is then connected to `target`."""
        other = self.partner_of(leg)
        if other is None:
            return False

        async def run() -> None:
            # One NOTIFY, final: the transfer is Hatif's to complete from here (the phone is released).
            await leg.notify_refer("SIP/2.0 200 OK")
            outcome = await self.transfer(other, target)
            log.info("refer", extra={"fields": {"call": self.id, "target": target, "outcome": outcome}})

        self.control.spawn(run())
        return True

    def on_refresh_failed(self, leg: SipLeg, status: int) -> None:
        """Hatif's session refresh got 408 or 481 (or no answer): the dialog is gone (RFC 4028 §10)."""
        self.control.session_refresh_failed(leg, status)

    # -- the end --------------------------------------------------------------------------------------

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for leg in list(self._bridged_with):
            self._unbridge_media(leg)
        self.control.call_ended(self)

    def wall(self, t: float | None) -> datetime | None:
        if t is None:
            return None
        return datetime.fromtimestamp(self.wall_started + (t - self.started), UTC)

    def derived_outcome(self) -> str:
        if self.outcome is not None:
            return self.outcome
        caller = self.caller
        if any(leg.direction == "outbound" and leg.answered_at is not None for leg in self.legs):
            return "answered"
        if caller is None:
            return "failed"
        if caller.cause == "cancelled":
            return "abandoned"
        if caller.answered_at is not None:
            return "answered"
        return caller.cause or "failed"

    def cdr(self) -> CallRecord:
        """The call detail record of this call (valid once it ended)."""
        ended = max((leg.ended_at or leg.started for leg in self.legs), default=self.started)
        answered = min((leg.answered_at for leg in self.legs if leg.answered_at is not None), default=None)
        legs = [LegRecord(leg.id, leg.direction, leg.party, self.wall(leg.started) or datetime.now(UTC),
                          self.wall(leg.answered_at), self.wall(leg.ended_at), leg.cause) for leg in self.legs]
        return CallRecord(
            call_id=self.id, tenant=self.tenant, caller=self.caller_number, called=self.called_number,
            started=self.wall(self.started) or datetime.now(UTC), outcome=self.derived_outcome(),
            answered=self.wall(answered), ended=self.wall(ended), duration=round(ended - self.started, 3),
            talk_seconds=round(self.talk_seconds, 3), recording=str(self.recording) if self.recording else None,
            recording_sha256=self.recording_sha256, variables=dict(self.variables), legs=legs)


async def first(*futures: asyncio.Future[Any]) -> None:
    """Wait until one of `futures` is done (futures of different result types, unlike `asyncio.wait`'s)."""
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


_NOT_ANSWERED: dict[str, Outcome] = {"busy": "busy", "no_answer": "no_answer", "unavailable": "unavailable",
                                     "cancelled": "cancelled"}


def not_answered(leg: SipLeg) -> Outcome:
    """How an attempt that was not answered ended, as an application sees it."""
    return _NOT_ANSWERED.get(leg.cause, "failed")


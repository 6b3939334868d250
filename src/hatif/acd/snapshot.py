"""A tenant's ACD at one moment, for the terminal summary, the wallboard and the API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    name: str
    waiting: int  # callers on the line now
    callbacks: int  # callback requests keeping their place
    available: int  # agents free for this queue now
    logged_in: int  # logged-in members fit for it
    longest_wait: float  # seconds, of the callers waiting now
    entered: int  # since start
    answered: int
    answered_in_target: int  # answered within the queue's service-level target
    abandoned: int
    service_level_target: float  # seconds (e.g. 20)

    @property
    def service_level(self) -> float | None:
        """Answered within target / (answered + abandoned), None before any call ended waiting."""
        done = self.answered + self.abandoned
        return self.answered_in_target / done if done else None


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    agent: str
    state: str  # logged_out, available, ringing, on_call, after_call_work, not_ready
    reason: str  # not-ready reason, or "" when none
    since: float  # seconds in this state


@dataclass(frozen=True, slots=True)
class AcdSnapshot:
    tenant: str
    queues: tuple[QueueSnapshot, ...]
    agents: tuple[AgentSnapshot, ...]

"""The ACD's configuration: queues, agents and not-ready reasons of a tenant (validated with pydantic).

These models are the YAML side; `queue_config` and `agent_profile` turn them into the router's own
`QueueConfig` and `AgentProfile`, and the tenant's checks (in `hatif.config`) make sure every name they use
exists. A queue section reads like this::

    queues:
      - name: sales
        strategy: longest_idle          # round_robin, fewest_calls, ring_all, random, best_skill_match
        requirements: {sales: 3}        # skill: minimum proficiency (1-10)
        ring_timeout: 15                # seconds an agent's phone rings before the next agent
        wrapup: 5                       # after-call work, seconds (null: until the agent says done)
        overflow:
          - {after: 60, widen: {}}      # after a minute any agent of the queue will do
          - {after: 180, voicemail: true}
        mailbox: sales                  # voicemail for key 2 and the voicemail overflow
        vip_list: vip                   # callers on this list go first
    agents:
      - {user: "1001", skills: {sales: 8}, languages: [ar, en], queues: [sales, {queue: support, penalty: 1}]}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .model import (
    AgentProfile,
    LanguageMode,
    MoveToQueue,
    OverflowAction,
    OverflowRule,
    QueueConfig,
    QueueMembership,
    SendToVoicemail,
    SkillRequirement,
    StickyAgent,
    Strategy,
    WidenSkills,
)

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")
_DIGIT_KEYS = "0123456789*#"


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r}: a name is lower-case letters, digits, '-' and '_' (up to 64)")
    return value


def _key(value: str | None) -> str | None:
    if value is not None and (len(value) != 1 or value not in _DIGIT_KEYS):
        raise ValueError(f"{value!r}: a key is one of 0-9, * and #")
    return value


def _levels(value: dict[str, int]) -> dict[str, int]:
    for skill, level in value.items():
        _name(skill)
        if not 1 <= level <= 10:
            raise ValueError(f"skill {skill!r}: proficiency {level} is outside 1..10")
    return value


Name = Annotated[str, AfterValidator(_name)]
Key = Annotated[str | None, AfterValidator(_key)]
Levels = Annotated[dict[str, int], AfterValidator(_levels)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OverflowSettings(_Model):
    """After `after` seconds: `widen` the requirements (to these), move to `queue`, or go to `voicemail`."""

    after: float = Field(ge=0)
    widen: Levels | None = None
    queue: Name | None = None
    voicemail: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> OverflowSettings:
        chosen = (self.widen is not None) + (self.queue is not None) + self.voicemail
        if chosen != 1:
            raise ValueError("give exactly one of widen: {skill: level}, queue: NAME or voicemail: true")
        return self

    def action(self) -> OverflowAction:
        if self.widen is not None:
            return WidenSkills(tuple(SkillRequirement(s, n) for s, n in self.widen.items()))
        if self.queue is not None:
            return MoveToQueue(self.queue)
        return SendToVoicemail()


class StickySettings(_Model):
    memory: float = Field(default=86_400.0, gt=0)
    wait: float = Field(default=0.0, ge=0)


class QueueSettings(_Model):
    """One queue: who may take its calls, how they are picked, what the caller hears while waiting."""

    name: Name
    strategy: Literal["longest_idle", "round_robin", "fewest_calls", "ring_all", "random",
                      "best_skill_match"] = "longest_idle"
    requirements: Levels = Field(default_factory=dict)
    ring_timeout: float = Field(default=15.0, gt=0, le=300)
    wrapup: float | None = Field(default=5.0, ge=0, le=3600)
    max_wait: float | None = Field(default=None, gt=0)
    max_length: int | None = Field(default=None, ge=1)
    join_when_empty: bool = True
    leave_when_empty: bool = False
    overflow: tuple[OverflowSettings, ...] = ()
    sticky: StickySettings | None = None
    language: Literal["ignore", "prefer", "require"] = "ignore"
    callback_timeout: float = Field(default=60.0, gt=0)
    mailbox: str | None = None
    vip_list: str | None = None
    service_level: float = Field(default=20.0, gt=0)
    """The service-level target: the share of callers answered within this many seconds is reported."""
    announce_every: float = Field(default=30.0, ge=0)
    """Seconds between announcements of the caller's position and expected wait (0: none)."""
    callback_key: Key = "1"
    voicemail_key: Key = "2"

    @model_validator(mode="after")
    def _consistent(self) -> QueueSettings:
        if self.callback_key is not None and self.callback_key == self.voicemail_key:
            raise ValueError(f"callback_key and voicemail_key are both {self.callback_key!r}")
        if self.voicemail_key is not None and self.mailbox is None:
            object.__setattr__(self, "voicemail_key", None)  # no mailbox: the key would lead nowhere
        return self


def queue_config(q: QueueSettings) -> QueueConfig:
    """The router's view of a queue."""
    return QueueConfig(
        name=q.name, strategy=Strategy(q.strategy),
        requirements=tuple(SkillRequirement(s, n) for s, n in q.requirements.items()),
        ring_timeout=q.ring_timeout, wrapup=q.wrapup, max_wait=q.max_wait, max_length=q.max_length,
        join_when_empty=q.join_when_empty, leave_when_empty=q.leave_when_empty,
        overflow=tuple(OverflowRule(o.after, o.action()) for o in sorted(q.overflow, key=lambda o: o.after)),
        sticky=StickyAgent(q.sticky.memory, q.sticky.wait) if q.sticky is not None else None,
        language=LanguageMode(q.language), callback_timeout=q.callback_timeout)


class Membership(_Model):
    queue: Name
    penalty: int = Field(default=0, ge=0, le=100)


def _membership(value: Any) -> Any:
    return {"queue": value} if isinstance(value, str) else value


class AgentSettings(_Model):
    """A user who takes queue calls on their registered phone: skills, languages, queues (with penalty)."""

    user: str
    skills: Levels = Field(default_factory=dict)
    languages: tuple[Literal["en", "ar", "fa"], ...] = ()
    """Languages spoken; the user's own language when empty."""
    queues: tuple[Membership, ...] = ()
    login: bool = False
    """Logged in (and available) when Hatif starts, as in the demo; otherwise the agent logs in by phone."""
    device: str | None = None
    """Where queue calls ring: the user's registered phone by default, or an outside number (a mobile)
    written as the dial plan reaches it, e.g. `+966501234567` or `endpoint:carrier/+966501234567`."""

    @model_validator(mode="before")
    @classmethod
    def _short_queues(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("queues"), list | tuple):
            data = {**data, "queues": [_membership(q) for q in data["queues"]]}
        return data


def agent_profile(a: AgentSettings, language: str) -> AgentProfile:
    return AgentProfile(a.user, dict(a.skills), frozenset(a.languages or (language,)))


def memberships(a: AgentSettings) -> list[QueueMembership]:
    return [QueueMembership(m.queue, m.penalty) for m in a.queues]


DEFAULT_REASONS = ("break", "lunch", "training", "meeting")

"""The IVR interpreter, sans-IO: a `FlowMachine` walks a flow and says what to do, one action at a time.

It owns no socket, clock or event loop (ARCHITECTURE.md, principle 1). The shell asks for the first
action with `start(now)`, carries it out, and hands the result back with `send(result, now)`, which
returns the next action, until an `EndCall` action ends the call::

    action = machine.start(time.time())
    while not isinstance(action, EndCall):
        action = machine.send(await carry_out(action), time.time())

Actions and the results they expect:

==============  ======================================================================
`Say`, `Play`   the digit that interrupted the prompt (with `interrupt`), else None
`Collect`       the digits pressed ("" when none came in time)
`SetLanguage`   None (the channel now speaks that language)
`HttpLookup`    `HttpResponse` (status and body) or `HttpFailure` (timeout, connection)
`HandOff`       the `Outcome` of a queue or a connect; None after a voicemail
`EndCall`       nothing: the flow is over
==============  ======================================================================

`now` is Unix time; it is read by `hours` conditions only. `flow:` routes are followed inside the
machine. A per-call step limit (nodes entered) ends a runaway call even if validation was skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import (
    DIGITS,
    KEY_NAMES,
    LANGUAGE_OPTION,
    LANGUAGES,
    MENU_INVALID,
    MENU_TIMEOUT,
    CallerInCondition,
    CollectNode,
    ConditionNode,
    FlowSet,
    HoursCondition,
    HttpNode,
    LanguageNode,
    MenuNode,
    Node,
    Prompt,
    RouteNode,
    RouteTarget,
    SayNode,
    VariableCondition,
    pick,
)
from .template import render

log = logging.getLogger(__name__)

STEP_LIMIT = 500
"""Nodes a call may enter before the machine gives up on it (a safety net behind loop validation)."""
MAX_VALUE = 1000
"""Longest text an HTTP lookup may put in a variable."""

# -- actions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Say:
    """Speak `text` in `language` (espeak-ng); with `interrupt`, a key stops it and is the result."""

    text: str
    language: str
    interrupt: bool = False


@dataclass(frozen=True, slots=True)
class Play:
    """Play a recording; `fallback` is said instead if the file cannot be played."""

    path: Path
    interrupt: bool = False
    fallback: Say | None = None


@dataclass(frozen=True, slots=True)
class Collect:
    """Collect up to `max_digits` keys, as `Channel.collect` does."""

    max_digits: int
    timeout: float
    inter_digit: float
    terminators: str


@dataclass(frozen=True, slots=True)
class SetLanguage:
    """The caller's language for the rest of the call (prompts, and what the agent is told)."""

    language: str


@dataclass(frozen=True, slots=True)
class HttpLookup:
    """Ask a web service; `body`, for POST, is sent as JSON. The whole exchange is bounded by `timeout`."""

    method: str
    url: str
    timeout: float
    body: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class HandOff:
    """Hand the caller to a queue, a voicemail box, or connect them (user, extension, number, endpoint)."""

    target: RouteTarget
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class EndCall:
    """End the call: `normal`, `step_limit` or `flow_error` (a node or flow that does not exist)."""

    cause: str = "normal"


Action = Say | Play | Collect | SetLanguage | HttpLookup | HandOff | EndCall

# -- results ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A web service's answer: its status code and body (not yet judged: the machine does that)."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """No answer from the web service: why (`timeout after 3 s`, `connection refused`...)."""

    reason: str


Result = str | HttpResponse | HttpFailure | None
_Steps = Generator[Action, Result, str | None]
_OUTCOMES = frozenset({"answered", "busy", "no_answer", "unavailable", "failed", "cancelled"})


class FlowMachine:
    """One call's walk through a tenant's flows, starting at flow `name`.

    `variables` (the channel's, typically) is read by templates and conditions and written by collect
    and http nodes; `language` is the caller's language at the start.
    """

    def __init__(self, flows: FlowSet, name: str, *, caller: str = "", caller_name: str | None = None,
                 called: str = "", language: str = "en", call_id: str = "",
                 variables: dict[str, str] | None = None, step_limit: int = STEP_LIMIT,
                 on_step: Callable[[str, str], None] | None = None) -> None:
        self.flows = flows
        self.on_step = on_step  # told (flow, node) as each node is entered: the call's events
        self.flow = name
        self.node: str | None = None
        self.language = language
        self.variables = variables if variables is not None else {}
        self.steps = 0
        self.step_limit = step_limit
        self._caller, self._caller_name, self._called, self._call_id = caller, caller_name, called, call_id
        self._now = 0.0
        self._pending: Action | None = None
        self._run = self._walk()

    @property
    def finished(self) -> bool:
        return isinstance(self._pending, EndCall)

    def start(self, now: float) -> Action:
        """The first action."""
        if self._pending is not None:
            raise RuntimeError("the flow machine has already started")
        self._now = now
        self._pending = next(self._run)
        return self._pending

    def send(self, result: Result, now: float) -> Action:
        """The result of the last action; returns the next one."""
        action = self._pending
        if action is None:
            raise RuntimeError("call start() first")
        if isinstance(action, EndCall):
            raise RuntimeError("the flow has ended")
        _check_result(action, result)
        self._now = now
        self._pending = self._run.send(result)
        return self._pending

    def values(self) -> dict[str, str]:
        """What templates and conditions read: the call's variables and the built-in ones."""
        return {**self.variables, "caller": self._caller, "caller_name": self._caller_name or "",
                "called": self._called, "language": self.language, "call_id": self._call_id}

    # -- the walk -----------------------------------------------------------------------------------------

    def _walk(self) -> Generator[Action, Result, None]:
        flow = self.flows.flows.get(self.flow)
        node_name: str | None = flow.start if flow is not None else None
        if flow is None:
            self._log(logging.ERROR, "ivr flow missing", flow=self.flow)
            yield EndCall("flow_error")
            return
        while node_name is not None:
            if self.steps >= self.step_limit:
                self._log(logging.WARNING, "ivr step limit", steps=self.steps)
                yield EndCall("step_limit")
                return
            self.steps += 1
            self.node = node_name
            node = self._node(node_name)
            if node is None:
                self._log(logging.ERROR, "ivr node missing")
                yield EndCall("flow_error")
                return
            self._log(logging.DEBUG, "ivr step", type=node.type, step=self.steps)
            if self.on_step is not None:
                self.on_step(self.flow, node_name)
            node_name = yield from self._enter(node)
        self._log(logging.DEBUG, "ivr end")
        yield EndCall("normal")

    def _node(self, name: str) -> Node | None:
        flow = self.flows.flows.get(self.flow)
        return flow.nodes.get(name) if flow is not None else None

    def _enter(self, node: Node) -> _Steps:
        """Carry out one node; returns the next node of the (possibly new) current flow, or None to end."""
        if isinstance(node, SayNode):
            yield from self._speak(node.prompt)
            return node.next
        if isinstance(node, MenuNode):
            return (yield from self._menu(node))
        if isinstance(node, CollectNode):
            return (yield from self._collect(node))
        if isinstance(node, LanguageNode):
            return (yield from self._language(node))
        if isinstance(node, ConditionNode):
            return self._condition(node)
        if isinstance(node, HttpNode):
            return (yield from self._http(node))
        return (yield from self._route(node))

    def _speak(self, prompt: Prompt, interrupt: bool = False) -> Generator[Action, Result, str | None]:
        result = yield self._prompt_action(prompt, interrupt)
        return result if isinstance(result, str) and result else None

    def _prompt_action(self, prompt: Prompt, interrupt: bool) -> Say | Play:
        lang, values = self.language, self.values()
        say: Say | None = None
        if prompt.text is not None:
            text, spoken_in = pick(prompt.text, lang)
            say = Say(render(text, values), spoken_in, interrupt)
        if prompt.wav is not None:
            wav_matches = lang in prompt.wav or "*" in prompt.wav
            text_matches = prompt.text is not None and (lang in prompt.text or "*" in prompt.text)
            if wav_matches or not text_matches:
                return Play(pick(prompt.wav, lang)[0], interrupt, say)
        assert say is not None  # a Prompt has a text or a wav
        return say

    def _menu(self, node: MenuNode) -> _Steps:
        ahead: str | None = None
        for attempt in range(1, node.retries + 1):
            key = ahead if ahead is not None else (yield from self._speak(node.prompt, interrupt=True))
            if key is None:
                key = str((yield Collect(1, node.timeout, node.timeout, "")))
            if key in node.options:
                self._log(logging.DEBUG, "ivr menu choice", key=key, next=node.options[key])
                return node.options[key]
            last = attempt == node.retries
            self._log(logging.DEBUG, "ivr menu miss", key=key, attempt=attempt)
            ahead = yield from self._speak(node.invalid if key else node.timeout_prompt, interrupt=not last)
        self._log(logging.INFO, "ivr menu failed", retries=node.retries)
        return node.on_fail

    def _collect(self, node: CollectNode) -> _Steps:
        ahead: str | None = None
        for attempt in range(1, node.retries + 1):
            first = ahead if ahead is not None else (yield from self._speak(node.prompt, interrupt=True))
            pressed = first is not None
            if first is None:
                entry = str((yield Collect(node.max_digits, node.timeout, node.inter_digit, node.terminator)))
            elif node.terminator and first == node.terminator:
                entry = ""
            elif node.max_digits == 1:
                entry = first
            else:
                rest = yield Collect(node.max_digits - 1, node.inter_digit, node.inter_digit, node.terminator)
                entry = first + str(rest)
            valid = node.min_digits <= len(entry) <= node.max_digits and all(
                c in DIGITS and c != node.terminator for c in entry)
            if valid:
                self.variables[node.variable] = entry
                self._log(logging.DEBUG, "ivr collected", variable=node.variable, digits=len(entry))
                return node.next
            last = attempt == node.retries
            self._log(logging.DEBUG, "ivr collect miss", digits=len(entry), attempt=attempt)
            miss = node.invalid if entry or pressed else node.timeout_prompt
            ahead = yield from self._speak(miss, interrupt=not last)
        self._log(logging.INFO, "ivr collect failed", retries=node.retries)
        return node.on_fail

    def _language(self, node: LanguageNode) -> _Steps:
        if node.set is not None:
            yield from self._set_language(node.set)
            return node.next
        options = node.options or {}
        ahead: str | None = None
        for attempt in range(1, node.retries + 1):
            key = ahead
            if key is None:
                for text, lang in self._choices(node):
                    result = yield Say(text, lang, interrupt=True)
                    if isinstance(result, str) and result:
                        key = result
                        break
            if key is None:
                key = str((yield Collect(1, node.timeout, node.timeout, "")))
            if key in options:
                yield from self._set_language(options[key])
                return node.next
            last = attempt == node.retries
            ahead = yield from self._speak(MENU_INVALID if key else MENU_TIMEOUT, interrupt=not last)
        self._log(logging.INFO, "ivr language not chosen", language=self.language)
        return node.on_fail if node.on_fail is not None else node.next

    def _choices(self, node: LanguageNode) -> list[tuple[str, str]]:
        """(text, language) pairs of a language choice's prompt, each spoken in its own language."""
        values = self.values()
        if node.prompt is not None:
            return [(render(text, values), lang) for lang, text in node.prompt.items()]
        out: list[tuple[str, str]] = []
        for key, lang in (node.options or {}).items():
            name = KEY_NAMES[lang].get(key, key)
            out.append((render(LANGUAGE_OPTION[lang], {"key": name}), lang))
        return out

    def _set_language(self, language: str) -> Generator[Action, Result, None]:
        if language not in LANGUAGES:
            return
        yield SetLanguage(language)
        self.language = language
        self._log(logging.DEBUG, "ivr language set", language=language)

    def _condition(self, node: ConditionNode) -> str:
        values = self.values()
        for i, case in enumerate(node.cases):
            cond = case.when
            if isinstance(cond, HoursCondition):
                schedule = self.flows.schedules.get(cond.hours)
                if schedule is None:
                    self._log(logging.ERROR, "ivr schedule missing", schedule=cond.hours)
                    holds = False
                else:
                    holds = schedule.is_open(self._now, self.flows.zone)
            elif isinstance(cond, CallerInCondition):
                numbers = self.flows.lists.get(cond.caller_in)
                if numbers is None:
                    self._log(logging.ERROR, "ivr list missing", list=cond.caller_in)
                holds = numbers is not None and self._caller in numbers
            else:
                assert isinstance(cond, VariableCondition)
                holds = cond.test(values)
            if holds:
                self._log(logging.DEBUG, "ivr condition", case=i, next=case.next)
                return case.next
        self._log(logging.DEBUG, "ivr condition", case="default", next=node.default)
        return node.default

    def _http(self, node: HttpNode) -> _Steps:
        values = self.values()
        url = render(node.url, values, url=True)
        body = {k: render(v, values) for k, v in node.body.items()} if node.body is not None else None
        result = yield HttpLookup(node.method, url, node.timeout, body)
        assert isinstance(result, HttpResponse | HttpFailure)
        extracted, reason = _judge(result, node.extract)
        if reason is not None:
            self._log(logging.WARNING, "ivr http lookup failed", url=url, reason=reason, next=node.on_error)
            return node.on_error
        self.variables.update(extracted)
        self._log(logging.DEBUG, "ivr http lookup", url=url, variables=",".join(sorted(extracted)))
        if node.say is not None:
            yield from self._speak(Prompt(text=node.say))
        return node.next

    def _route(self, node: RouteNode) -> _Steps:
        if node.message is not None:
            yield from self._speak(node.message)
        target = node.to
        self._log(logging.INFO, "ivr route", to=str(target))
        if target.kind == "hangup":
            return None
        if target.kind == "flow":
            flow = self.flows.flows.get(target.name)
            if flow is None:
                self._log(logging.ERROR, "ivr flow missing", to=target.name)
                return None
            self.flow = target.name
            return flow.start
        outcome = yield HandOff(target, node.timeout)
        if target.kind == "voicemail" or outcome == "answered":
            return None
        self._log(logging.INFO, "ivr route failed", to=str(target), outcome=str(outcome), next=node.on_fail)
        return node.on_fail

    def _log(self, level: int, msg: str, **fields: Any) -> None:
        if log.isEnabledFor(level):
            log.log(level, msg, extra={"fields": {"call": self._call_id, "flow": self.flow, "node": self.node,
                                                  **fields}})


def _check_result(action: Action, result: Result) -> None:
    """Refuse a result that does not answer `action` (a bug in the shell, said plainly)."""
    if isinstance(action, Say | Play):
        ok = result is None or (isinstance(result, str) and len(result) <= 1)
    elif isinstance(action, Collect):
        ok = isinstance(result, str)
    elif isinstance(action, HttpLookup):
        ok = isinstance(result, HttpResponse | HttpFailure)
    elif isinstance(action, HandOff):
        ok = result is None if action.target.kind == "voicemail" else result in _OUTCOMES
    else:
        ok = result is None
    if not ok:
        raise TypeError(f"{result!r} is not a result of {type(action).__name__}")


def _judge(result: HttpResponse | HttpFailure, extract: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The variables a lookup yields, or why it failed."""
    if isinstance(result, HttpFailure):
        return {}, result.reason
    if not 200 <= result.status < 300:
        return {}, f"status {result.status}"
    if not extract:
        return {}, None
    try:
        document: object = json.loads(result.body)
    except ValueError as e:  # UnicodeDecodeError is a ValueError
        return {}, f"the answer is not JSON ({e})"
    out: dict[str, str] = {}
    for variable, path in extract.items():
        value, problem = _at_path(document, path)
        if problem is not None:
            return {}, problem
        out[variable] = value
    return out, None


def _at_path(document: object, path: str) -> tuple[str, str | None]:
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return "", f"the answer has no {path!r}"
    if isinstance(node, bool):
        return ("true" if node else "false"), None
    if isinstance(node, int | float | str):
        text = str(node)
        if len(text) > MAX_VALUE:
            return "", f"{path!r} is longer than {MAX_VALUE} characters"
        return text, None
    return "", f"{path!r} is not a text or a number"


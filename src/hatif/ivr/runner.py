"""Run an IVR flow on a call: the asyncio shell around `FlowMachine`.

`run_flow` answers the call and carries out each action of the machine on a `hatif.calls.api.Channel`:
prompts with `say`/`play` (menu prompts with `interrupt=True`, so a caller who knows the menu can type
ahead), keys with `collect`, people and numbers with `connect`, web lookups with httpx. Queues and
voicemail belong to other capabilities and are reached through the `RouteHandler` the caller of
`run_flow` passes in. `flow:` routes are followed by the machine itself.

When the caller hangs up, the channel raises `hatif.calls.api.Hangup` wherever the flow was waiting,
and the run ends quietly (`caller_hangup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import httpx

from ..calls import api
from ..calls.api import Channel, Outcome
from .machine import (
    STEP_LIMIT,
    Action,
    Collect,
    EndCall,
    FlowMachine,
    HandOff,
    HttpFailure,
    HttpLookup,
    HttpResponse,
    Play,
    Result,
    Say,
    SetLanguage,
)
from .model import Flow, FlowSet

log = logging.getLogger(__name__)

MAX_ANSWER = 64 * 1024
"""Largest web-service answer read for an HTTP lookup; a longer one counts as a failure."""


class RouteHandler(Protocol):
    """What the IVR hands callers to: the ACD's queues and the voicemail boxes."""

    async def queue(self, channel: Channel, name: str) -> Outcome:
        """Queue the caller in queue `name` until an agent answers (`answered`, once that call has ended)
        or the queue gives up on them (`no_answer`, `unavailable`...: the flow goes on to `on_fail`)."""

    async def voicemail(self, channel: Channel, mailbox: str) -> None:
        """Let the caller leave a message in `mailbox`; the call ends after it."""


async def run_flow(channel: Channel, flows: FlowSet | Mapping[str, Flow], name: str, *, router: RouteHandler,
                   clock: Callable[[], float] = time.time, http_client: httpx.AsyncClient | None = None,
                   step_limit: int = STEP_LIMIT, on_step: Callable[[str, str], None] | None = None) -> str:
    """Run flow `name` on `channel` until the call ends; returns why it ended.

    The result is the machine's hang-up cause (`normal`, `step_limit`, `flow_error`) or `caller_hangup`.
    An exception out of the channel or the router (other than `Hangup`) is logged and the call hung up
    with `flow_error`.
    `clock` gives Unix time (for business hours); `http_client` is used for lookups when given (and left
    open), else one is made for this call and closed at its end.
    """
    flowset = flows if isinstance(flows, FlowSet) else FlowSet(flows)
    machine = FlowMachine(flowset, name, caller=channel.caller_number, caller_name=channel.caller_name,
                          called=channel.called_number, language=channel.language, call_id=channel.call_id,
                          variables=channel.variables, step_limit=step_limit, on_step=on_step)
    fields = {"call": channel.call_id, "flow": name}
    own_client: httpx.AsyncClient | None = None
    try:
        await channel.answer()
        action = machine.start(clock())
        while not isinstance(action, EndCall):
            if isinstance(action, HttpLookup) and http_client is None:
                http_client = own_client = httpx.AsyncClient(follow_redirects=False)
            result = await _carry_out(channel, action, router, http_client)
            action = machine.send(result, clock())
        if not channel.ended:
            await channel.hangup(action.cause)
        log.debug("ivr finished", extra={"fields": {**fields, "cause": action.cause, "steps": machine.steps}})
        return action.cause
    except api.Hangup:
        log.debug("ivr caller hung up", extra={"fields": {**fields, "node": machine.node, "steps": machine.steps}})
        return "caller_hangup"
    except Exception:  # a bug, or a route handler failing: the caller must not be left in silence
        log.exception("ivr failed", extra={"fields": {**fields, "node": machine.node}})
        if not channel.ended:
            with contextlib.suppress(api.Hangup):
                await channel.hangup("flow_error")
        return "flow_error"
    finally:
        if own_client is not None:
            await own_client.aclose()


async def _carry_out(channel: Channel, action: Action, router: RouteHandler,
                     client: httpx.AsyncClient | None) -> Result:
    if isinstance(action, Say):
        return await channel.say(action.text, language=action.language, interrupt=action.interrupt)
    if isinstance(action, Play):
        return await _play(channel, action)
    if isinstance(action, Collect):
        return await channel.collect(max_digits=action.max_digits, timeout=action.timeout,
                                     inter_digit=action.inter_digit, terminators=action.terminators)
    if isinstance(action, SetLanguage):
        channel.language = action.language
        return None
    if isinstance(action, HttpLookup):
        assert client is not None
        return await lookup(client, action)
    assert isinstance(action, HandOff)
    target = action.target
    if target.kind == "queue":
        return await router.queue(channel, target.name)
    if target.kind == "voicemail":
        await router.voicemail(channel, target.name)
        return None
    outcome = await channel.connect(target.dial, timeout=action.timeout)
    log.info("ivr connect", extra={"fields": {"call": channel.call_id, "to": str(target), "outcome": outcome}})
    return outcome


async def _play(channel: Channel, action: Play) -> str | None:
    try:
        return await channel.play(action.path, interrupt=action.interrupt)
    except (OSError, ValueError) as e:  # a missing or unreadable recording (PromptError is a ValueError)
        log.warning("ivr prompt unplayable", extra={"fields": {"call": channel.call_id, "path": str(action.path),
                                                               "error": str(e)}})
        if action.fallback is None:
            return None
        fallback = action.fallback
        return await channel.say(fallback.text, language=fallback.language, interrupt=fallback.interrupt)


async def lookup(client: httpx.AsyncClient, action: HttpLookup) -> HttpResponse | HttpFailure:
    """Carry out an `HttpLookup`: the whole exchange bounded by its timeout, the answer by `MAX_ANSWER`."""
    try:
        async with asyncio.timeout(action.timeout):
            request = client.build_request(action.method, action.url, timeout=action.timeout,
                                           json=dict(action.body) if action.body is not None else None)
            response = await client.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        return HttpFailure(f"the answer is longer than {MAX_ANSWER} bytes")
                return HttpResponse(response.status_code, bytes(body))
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return HttpFailure(f"no answer within {action.timeout:g} s")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as e:
        return HttpFailure(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)

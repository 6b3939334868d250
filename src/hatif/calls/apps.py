"""The applications every Hatif has: the echo test and a spoken greeting (more come from `ivr`, `voicemail`
and `acd`, registered by `hatif.app`)."""

from __future__ import annotations

from collections.abc import Mapping

from .call import Call
from .control import App, CallControl


async def echo(call: Call, argument: str) -> None:
    """Answer and send the caller's own audio back until they hang up (the echo test, 600 and *43)."""
    await call.answer()
    caller = call.caller
    assert caller is not None
    call.outcome = "echo"
    call.control.media.echo(caller.media)
    await caller.finished


def greeting_app(texts: Mapping[str, str]) -> App:
    async def greeting(call: Call, argument: str) -> None:
        """A greeting spoken in the caller's language, then hang up (601)."""
        call.outcome = "greeting"
        text = texts.get(call.language) or texts.get("en", "Welcome to Hatif.")
        await call.say(text)
        await call.hangup()
    return greeting


async def conference(call: Call, name: str) -> None:
    """Answer and join the caller to a named conference room of the tenant (`app:conference:NAME`)."""
    await call.answer()
    caller = call.caller
    assert caller is not None
    call.outcome = "conference"
    call.join_conference(caller, name or "main")
    await caller.finished


def register_builtin(control: CallControl, greetings: Mapping[str, str]) -> None:
    control.register_app("echo", echo)
    control.register_app("conference", conference)
    control.register_app("greeting", greeting_app(greetings))

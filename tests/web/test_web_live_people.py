"""The live feed and people: a person's token or session opens it when the role grants `events:read`; an agent's
token, and a session cookie sent by a page of another site, are refused with the reason; an owner names the
tenant."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from people_world import FAST_HASHER, PASSWORD
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hatif.bus import Bus
from hatif.events import CallOffered
from hatif.outbox import Outbox
from hatif.people import PLATFORM, PeopleService, PeopleStore, Role
from hatif.people.credentials import Passwords
from hatif.store import Store
from hatif.store.eventlog import EventLog
from hatif.web import create_api, serve_api

Opener = Callable[..., Any]


def run(store: Store, scenario: Callable[[Outbox, Opener, dict[str, str]], Awaitable[Any]]) -> Any:
    people = PeopleService(PeopleStore(store.engine), Passwords(FAST_HASHER), tenants=["acme", "globex"])
    tokens = {}
    for tenant, name, role in (("acme", "amal", Role.AGENT), ("acme", "sami", Role.SUPERVISOR),
                               (PLATFORM, "root", Role.OWNER)):
        user = people.add_user(tenant, name, role, PASSWORD)
        issued = people.create_token(tenant, user.id, "all", None)
        assert issued is not None
        tokens[name] = issued.secret
    tokens["session"] = people.sign_in("acme", "sami", PASSWORD, "127.0.0.1").secret

    async def main() -> Any:
        outbox = Outbox(Bus(), EventLog(store))
        await outbox.start()
        api = await serve_api(create_api(store, {}, events=outbox, people=people), "127.0.0.1", 0)

        def client(headers: dict[str, str], query: str = "") -> Any:
            return connect(f"ws://127.0.0.1:{api.port}/api/v1/events{query}", additional_headers=headers,
                           open_timeout=5, close_timeout=2)
        try:
            return await scenario(outbox, client, tokens)
        finally:
            await outbox.close()
            await api.stop()
    return asyncio.run(asyncio.wait_for(main(), 60))


def offered(tenant: str, i: int) -> CallOffered:
    return CallOffered(tenant=tenant, at=1_780_000_000.0 + i, call_id=f"{tenant}-{i}", caller="1001", called="600")


async def first_call(outbox: Outbox, open_: Any, tenant: str = "acme") -> str:
    async with open_ as ws:
        await asyncio.sleep(0.1)
        await outbox.emit(offered("acme" if tenant == "globex" else "globex", 0))  # another tenant's: not sent
        await outbox.emit(offered(tenant, 1))
        [event] = json.loads(await asyncio.wait_for(ws.recv(), 5))  # a message is an array of events
        return str(event["call_id"])


def test_a_supervisors_token_and_session_and_an_owner_see_their_tenant(store: Store) -> None:
    async def scenario(outbox: Outbox, client: Opener, tokens: dict[str, str]) -> list[str]:
        return [
            await first_call(outbox, client({"Authorization": f"Bearer {tokens['sami']}"}, "?streams=calls")),
            await first_call(outbox, client({"Cookie": f"hatif_session={tokens['session']}"}, "?streams=calls")),
            await first_call(outbox, client({"Authorization": f"Bearer {tokens['root']}"},
                                            "?streams=calls&tenant=globex"), "globex"),
        ]

    assert run(store, scenario) == ["acme-1", "acme-1", "globex-1"]


@pytest.mark.parametrize(("who", "origin", "reason"), [
    ("amal", None, "4403 this needs the scope events:read"),
    ("session", "https://evil.example", "4403 a session's feed is opened by a page of this site only"),
    ("nobody", None, "4401 a valid bearer token is required"),
])
def test_refused_people_are_told_why(store: Store, who: str, origin: str | None, reason: str) -> None:
    async def scenario(outbox: Outbox, client: Opener, tokens: dict[str, str]) -> str:
        if who == "session":
            headers = {"Cookie": f"hatif_session={tokens['session']}"}
        else:
            headers = {"Authorization": f"Bearer {tokens.get(who, 'hatif_forged')}"}
        if origin is not None:
            headers["Origin"] = origin
        async with client(headers) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        return f"{closed.value.rcvd.code} {closed.value.rcvd.reason}"

    assert run(store, scenario) == reason

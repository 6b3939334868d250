"""The tenant x role x endpoint matrix (issue 11's acceptance), each case a test: every /api/v1 endpoint answers
401 without a valid credential, 403 to a role (or installation token) that must not use it, success to one that
may, and 404 for another tenant's object with the body of an id that never existed.

The principals are people tokens with every scope of their role (`people_world`), and the tenant's installation
token. Each test runs on a copy of one populated SQLite file, so that a test that deletes leaves the others be.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from agents_port import RouterPort
from fastapi.testclient import TestClient
from people_world import FAST_HASHER, PASSWORD, PEOPLE

from hatif.acd.states import StateRules
from hatif.center import Center
from hatif.config import parse_config
from hatif.people import PeopleService, PeopleStore
from hatif.people.credentials import Passwords
from hatif.store import CallRecord, Store, VoicemailMessage
from hatif.store.configrows import ConfigRows
from hatif.web import create_api

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
ACME = "acme-token-3f9a1c"  # an installation token of tenant acme, as in conftest.py
TOKENS = {ACME: "acme", "globex-token-77be02": "globex"}
AGENT, SUPERVISOR, ADMINISTRATOR, OWNER, INSTALLATION = "agent", "supervisor", "administrator", "owner", "installation"
ROLES = (AGENT, SUPERVISOR, ADMINISTRATOR, OWNER, INSTALLATION)
PRINCIPAL = {AGENT: "amal", SUPERVISOR: "sami", ADMINISTRATOR: "adel", OWNER: "root"}
EVERYONE = frozenset(ROLES)
RECORDS_READERS = frozenset({SUPERVISOR, ADMINISTRATOR, OWNER, INSTALLATION})
PEOPLE_READERS = frozenset({SUPERVISOR, ADMINISTRATOR, OWNER})
PEOPLE_ADMINS = frozenset({ADMINISTRATOR, OWNER})
CONFIG_READERS = frozenset({SUPERVISOR, ADMINISTRATOR, OWNER})
CONFIG_ADMINS = frozenset({ADMINISTRATOR, OWNER})
CENTER = "tenants:\n  - {name: acme, queues: [{name: q-acme}]}\n  - {name: globex, queues: [{name: q-globex}]}\n"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {call}, {message}, {user}, {token}, {agent}: an object of the tenant acting (or the other's)
    allowed: frozenset[str]
    body: dict[str, Any] | list[Any] | None = None
    missing: str | None = None  # the 404 message for an object not in the tenant, when the path names one

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("GET", "/api/v1/calls", RECORDS_READERS),
    Endpoint("GET", "/api/v1/calls/{call}", RECORDS_READERS, missing="no call '{call}'"),
    Endpoint("GET", "/api/v1/queue-log", RECORDS_READERS),
    Endpoint("GET", "/api/v1/voicemail/1001", EVERYONE),
    Endpoint("GET", "/api/v1/voicemail/1001/{message}", EVERYONE, missing="no message {message} in mailbox '1001'"),
    Endpoint("GET", "/api/v1/voicemail/1001/{message}/audio", EVERYONE,
             missing="no message {message} in mailbox '1001'"),
    Endpoint("POST", "/api/v1/voicemail/1001/{message}/heard", EVERYONE, {"heard": True},
             missing="no message {message} in mailbox '1001'"),
    Endpoint("DELETE", "/api/v1/voicemail/1001/{message}", EVERYONE, missing="no message {message} in mailbox '1001'"),
    Endpoint("GET", "/api/v1/session", EVERYONE),
    Endpoint("DELETE", "/api/v1/session", EVERYONE),
    Endpoint("GET", "/api/v1/users", PEOPLE_READERS),
    Endpoint("POST", "/api/v1/users", PEOPLE_ADMINS, {"name": "nina", "role": "agent", "password": PASSWORD}),
    Endpoint("GET", "/api/v1/users/{user}", PEOPLE_READERS, missing="no user {user}"),
    Endpoint("PATCH", "/api/v1/users/{user}", PEOPLE_ADMINS, {"role": "supervisor"}, missing="no user {user}"),
    Endpoint("DELETE", "/api/v1/users/{user}", PEOPLE_ADMINS, missing="no user {user}"),
    Endpoint("GET", "/api/v1/users/{user}/tokens", PEOPLE_ADMINS, missing="no user {user}"),
    Endpoint("POST", "/api/v1/users/{user}/tokens", PEOPLE_ADMINS, {"name": "ci"}, missing="no user {user}"),
    Endpoint("DELETE", "/api/v1/users/{user}/tokens/{token}", PEOPLE_ADMINS,
             missing="no token {token} of user {user}"),
    Endpoint("GET", "/api/v1/audit", PEOPLE_ADMINS),
    Endpoint("GET", "/api/v1/agents", EVERYONE),
    Endpoint("GET", "/api/v1/agents/{agent}", EVERYONE, missing="no agent '{agent}'"),
    # An agent sets only its own state (tests/web/test_web_agents.py); {agent} is another agent.
    Endpoint("PUT", "/api/v1/agents/{agent}/state", RECORDS_READERS, {"state": "logged_in"},
             missing="no agent '{agent}'"),
    Endpoint("GET", "/api/v1/config/queues", CONFIG_READERS),
    Endpoint("GET", "/api/v1/config/queues/{queue}", CONFIG_READERS, missing="no queue '{queue}'"),
    Endpoint("PUT", "/api/v1/config/queues/{queue}", CONFIG_ADMINS, {"strategy": "round_robin"}),
    Endpoint("PUT", "/api/v1/config/reasons", CONFIG_ADMINS, ["break", "lunch"]),
    Endpoint("DELETE", "/api/v1/config/queues/{queue}", CONFIG_ADMINS, missing="no queue '{queue}'"),
]
BY_ID = {e.id: e for e in ENDPOINTS}
UNAUTHORIZED = {"error": {"code": "unauthorized",
                          "message": "a valid API token is required: Authorization: Bearer <token>"}}


def write_wav(path: Path) -> str:
    """A quarter second of silence, as voicemail is recorded (8 kHz, 16-bit mono)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 2000)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Template:
    """One populated store: the people of `people_world`, and a call, a voicemail message, a user (`tara`,
    `gus`) and a token of that user in each tenant."""
    path: Path
    wavs: dict[str, Path]
    tokens: dict[str, str]
    objects: dict[str, dict[str, str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    folder = tmp_path_factory.mktemp("matrix")
    path = folder / "hatif.db"
    wavs = {tenant: folder / f"{tenant}.wav" for tenant in ("acme", "globex")}
    with Store(path=path) as store:
        store.migrate()
        people = PeopleService(PeopleStore(store.engine), Passwords(FAST_HASHER))
        users = {name: people.add_user(tenant, name, role, PASSWORD) for tenant, name, role in PEOPLE}
        tokens = {}
        for name, user in users.items():
            issued = people.create_token(user.tenant, user.id, "all", None)
            assert issued is not None
            tokens[name] = issued.secret
        template = Template(path, wavs, tokens)
        for tenant, target in (("acme", "tara"), ("globex", "gus")):
            call_id = f"c-{tenant}"
            store.add_call(CallRecord(call_id=call_id, tenant=tenant, caller="+982188776655", called="100",
                                      started=T0, outcome="answered", ended=T0, duration=1.0))
            message = store.add_voicemail(VoicemailMessage(
                tenant=tenant, mailbox="1001", caller="+97155123", caller_name=None, received=T0, seconds=0.5,
                path=str(wavs[tenant]), sha256=write_wav(wavs[tenant])))
            token = people.create_token(tenant, users[target].id, "old", None)
            assert token is not None
            template.objects[tenant] = {"call": call_id, "message": str(message), "user": str(users[target].id),
                                        "token": str(token.token.id), "agent": target, "queue": f"q-{tenant}"}
        asyncio.run(Center(parse_config(CENTER), ConfigRows(store)).start())  # the tenants' configuration rows
    return template


@pytest.fixture
def client(template: Template, tmp_path: Path) -> Iterator[TestClient]:
    path = tmp_path / "hatif.db"
    shutil.copyfile(template.path, path)
    for wav in template.wavs.values():
        if not wav.exists():  # deleted by a test before (DELETE voicemail removes the file)
            write_wav(wav)
    with Store(path=path) as store:
        people = PeopleService(PeopleStore(store.engine), Passwords(FAST_HASHER), tenants=["acme", "globex"])
        agents = {"acme": RouterPort({"amal": ("sales",), "tara": ("sales",)}, StateRules(("break",))),
                  "globex": RouterPort({"gus": ("help",)}, StateRules())}
        center = Center(parse_config(CENTER), ConfigRows(store), audit=people.audit)
        asyncio.run(center.start())
        with TestClient(create_api(store, TOKENS, people=people, agents=agents, config=center)) as client:
            yield client


def headers(template: Template, role: str) -> dict[str, str]:
    token = ACME if role == INSTALLATION else template.tokens[PRINCIPAL[role]]
    return {"Authorization": f"Bearer {token}"}


def url(endpoint: Endpoint, objects: dict[str, str], role: str | None = None, tenant: str = "acme") -> str:
    path = endpoint.path.format(**objects)
    return f"{path}?tenant={tenant}" if role == OWNER else path


def call(client: TestClient, endpoint: Endpoint, path: str, hdrs: dict[str, str] | None = None) -> Any:
    return client.request(endpoint.method, path, json=endpoint.body, headers=hdrs or {})


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_without_credentials_401(client: TestClient, template: Template, endpoint: Endpoint) -> None:
    r = call(client, endpoint, url(endpoint, template.objects["acme"]))
    assert (r.status_code, r.json()) == (401, UNAUTHORIZED)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_each_role(client: TestClient, template: Template, endpoint: Endpoint, role: str) -> None:
    r = call(client, endpoint, url(endpoint, template.objects["acme"], role), headers(template, role))
    if role in endpoint.allowed:
        assert r.status_code in (200, 201, 204), r.text
    else:
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text


CROSS = [pytest.param(e, role, id=f"{e.id}-{role}") for e in ENDPOINTS if e.missing for role in ROLES
         if role in e.allowed]


@pytest.mark.parametrize(("endpoint", "role"), CROSS)
def test_another_tenants_object_is_404(client: TestClient, template: Template, endpoint: Endpoint,
                                       role: str) -> None:
    assert endpoint.missing is not None
    others = template.objects["globex"]
    r = call(client, endpoint, url(endpoint, others, role), headers(template, role))
    expected = {"error": {"code": "not_found", "message": endpoint.missing.format(**others)}}
    assert (r.status_code, r.json()) == (404, expected)
    never = {k: "987654" if k != "call" else "c-never" for k in others}
    r = call(client, endpoint, url(endpoint, never, role), headers(template, role))
    assert (r.status_code, r.json()) == (404, {"error": {"code": "not_found",
                                                         "message": endpoint.missing.format(**never)}})


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.path != "/api/v1/session"], ids=lambda e: e.id)
def test_naming_another_tenant_is_404_but_for_owners(client: TestClient, template: Template,
                                                     endpoint: Endpoint) -> None:
    admin = headers(template, ADMINISTRATOR)
    r = call(client, endpoint, f"{endpoint.path.format(**template.objects['acme'])}?tenant=globex", admin)
    assert (r.status_code, r.json()) == (404, {"error": {"code": "not_found", "message": "no tenant 'globex'"}})
    r = call(client, endpoint, url(endpoint, template.objects["globex"], OWNER, "globex"),
             headers(template, OWNER))
    assert r.status_code in (200, 201, 204), r.text


@pytest.mark.parametrize("endpoint", [BY_ID["GET /api/v1/calls"], BY_ID["GET /api/v1/voicemail/1001"],
                                      BY_ID["GET /api/v1/queue-log"], BY_ID["GET /api/v1/users"],
                                      BY_ID["GET /api/v1/audit"], BY_ID["GET /api/v1/config/queues"]],
                         ids=lambda e: e.id)
def test_lists_hold_only_the_tenants_own(client: TestClient, template: Template, endpoint: Endpoint) -> None:
    r = call(client, endpoint, endpoint.path, headers(template, ADMINISTRATOR))
    assert r.status_code == 200
    for item in r.json():
        assert item.get("tenant", "acme") == "acme"
        assert item.get("call_id") != "c-globex"
        assert item.get("name") not in {"gina", "gus", "root"}
    assert "globex" not in r.text and "gina" not in r.text

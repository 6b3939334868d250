"""API v1 /agents over a sans-IO port (the real router and rules, a fake clock): listing and reading agent states
per tenant, setting them, and every refused request with its status and error code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agents_port import RouterPort
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from people_world import FAST_HASHER, PASSWORD, PEOPLE

from hatif.acd.states import StateRules
from hatif.people import PeopleService, PeopleStore
from hatif.people.credentials import Passwords
from hatif.store import Store
from hatif.web import create_api

ACME, GLOBEX = "acme-token-3f9a1c", "globex-token-77be02"  # the tokens of tests/web/conftest.py
TOKENS = {ACME: "acme", GLOBEX: "globex"}


@pytest.fixture
def acme() -> RouterPort:
    return RouterPort({"1001": ("sales", "support"), "1002": ("sales",)},
                      StateRules(("break", "lunch"), require_reason=True))


@pytest.fixture
def agents_client(store: Store, acme: RouterPort) -> Iterator[TestClient]:
    globex = RouterPort({"2001": ("help",)}, StateRules())
    with TestClient(create_api(store, TOKENS, agents={"acme": acme, "globex": globex})) as client:
        yield client


def auth(token: str = ACME) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def put(client: TestClient, name: str, body: object, token: str = ACME) -> tuple[int, dict[str, object]]:
    r = client.put(f"/api/v1/agents/{name}/state", json=body, headers=auth(token))
    return r.status_code, r.json()


def error(body: dict[str, object]) -> tuple[object, str]:
    err = body["error"]
    assert isinstance(err, dict) and set(err) >= {"code", "message"}
    return err["code"], str(err["message"])


def test_a_token_is_required(agents_client: TestClient) -> None:
    assert agents_client.get("/api/v1/agents").status_code == 401
    assert agents_client.get("/api/v1/agents/1001", headers=auth("wrong-token-xxxxxxxx")).status_code == 401
    r = agents_client.put("/api/v1/agents/1001/state", json={"state": "logged_in"})
    assert r.status_code == 401 and error(r.json())[0] == "unauthorized"


def test_agents_are_listed_per_tenant(agents_client: TestClient) -> None:
    r = agents_client.get("/api/v1/agents", headers=auth())
    assert r.status_code == 200
    assert [(a["agent"], a["state"], a["queues"]) for a in r.json()] == [("1001", "logged_out", []),
                                                                        ("1002", "logged_out", [])]
    assert [a["agent"] for a in agents_client.get("/api/v1/agents", headers=auth(GLOBEX)).json()] == ["2001"]


def test_another_tenants_agent_is_not_found(agents_client: TestClient, acme: RouterPort) -> None:
    r = agents_client.get("/api/v1/agents/1001", headers=auth(GLOBEX))
    assert r.status_code == 404 and error(r.json()) == ("not_found", "no agent '1001'")
    status, body = put(agents_client, "1001", {"state": "logged_in"}, GLOBEX)
    assert status == 404 and error(body)[0] == "not_found"
    assert agents_client.get("/api/v1/agents/nobody", headers=auth()).status_code == 404
    assert acme.asked == []


def test_setting_states_answers_the_state_applied(agents_client: TestClient, acme: RouterPort) -> None:
    status, body = put(agents_client, "1001", {"state": "logged_in", "queues": ["support"]})
    assert status == 200 and (body["state"], body["reason"], body["queues"]) == ("available", "login", ["support"])
    status, body = put(agents_client, "1001", {"state": "not_ready", "reason": "lunch"})
    assert status == 200 and (body["state"], body["reason"]) == ("not_ready", "lunch")
    got = agents_client.get("/api/v1/agents/1001", headers=auth()).json()
    assert got["state"] == "not_ready" and got["since"].startswith("2026-")
    status, body = put(agents_client, "1001", {"state": "logged_out"})
    assert status == 200 and body["state"] == "logged_out"
    assert [r.by for r in acme.asked] == ["installation token of acme"] * 3


def test_wrapup_remaining_is_shown(agents_client: TestClient, acme: RouterPort) -> None:
    put(agents_client, "1002", {"state": "logged_in"})
    acme.router.enqueue("c1", "sales", 100.0)
    acme.router.offer_answered("c1", "1002", 101.0)
    acme.router.call_ended("c1", 110.0)
    acme.now = 115.0
    body = agents_client.get("/api/v1/agents/1002", headers=auth()).json()
    assert (body["state"], body["wrapup_queue"], body["wrapup_remaining"]) == ("after_call_work", "sales", 25.0)
    status, body = put(agents_client, "1002", {"state": "available"})  # done with the paperwork
    assert status == 200 and body["state"] == "available" and body["wrapup_remaining"] is None


def test_not_ready_during_a_call_is_pending(agents_client: TestClient, acme: RouterPort) -> None:
    put(agents_client, "1002", {"state": "logged_in"})
    acme.router.enqueue("c1", "sales", 100.0)
    acme.router.offer_answered("c1", "1002", 101.0)
    status, body = put(agents_client, "1002", {"state": "not_ready", "reason": "break"})
    assert status == 200 and (body["state"], body["pending_reason"]) == ("on_call", "break")
    status, body = put(agents_client, "1002", {"state": "logged_out"})
    assert status == 409 and error(body)[0] == "on_call"


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"state": "not_ready"}, "reason_required", "one of: break, lunch"),
    ({"state": "not_ready", "reason": "nap"}, "unknown_reason", "'nap' is not a not-ready reason of this tenant; "
                                                                "one of: break, lunch"),
    ({"state": "logged_in", "queues": ["billing"]}, "unknown_queue", "its queues: sales, support"),
    ({"state": "logged_in", "queues": ["sales", "sales"]}, "invalid_queues", "listed twice"),
    ({"state": "available", "reason": "lunch"}, "reason_not_allowed", "only with state not_ready"),
    ({"state": "on_call"}, "invalid_request", "body parameter 'state'"),
    ({"state": "available", "by": "boss"}, "invalid_request", "body parameter 'by'"),
    ({}, "invalid_request", "body parameter 'state'"),
])
def test_bad_requests_are_422_naming_the_problem(agents_client: TestClient, acme: RouterPort, body: object,
                                                 code: str, words: str) -> None:
    status, answer = put(agents_client, "1001", body)
    assert status == 422, answer
    got, message = error(answer)
    assert got == code and words in message, message
    assert acme.router.agent_state("1001").value == "logged_out"


def test_a_state_the_agent_is_not_in_a_position_for_is_409(agents_client: TestClient) -> None:
    status, body = put(agents_client, "1001", {"state": "available"})
    assert status == 409 and error(body) == ("logged_out", "agent '1001' is logged out: log in first (state logged_in)")
    status, _ = put(agents_client, "1001", {"state": "logged_in"})
    status, body = put(agents_client, "1001", {"state": "logged_in", "queues": ["sales"]})
    assert status == 422 and error(body)[0] == "queues_not_allowed"


def test_an_api_without_acd_has_no_agents(client: TestClient) -> None:
    assert client.get("/api/v1/agents", headers=auth()).json() == []
    assert client.get("/api/v1/agents/1001", headers=auth()).status_code == 404
    assert client.put("/api/v1/agents/1001/state", json={"state": "logged_in"}, headers=auth()).status_code == 404


# -- roles: an agent sets its own state, a supervisor anyone's (and that is audited) ---------------------------


@pytest.fixture
def roles(store: Store) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], PeopleService, RouterPort]]:
    people = PeopleService(PeopleStore(store.engine), Passwords(FAST_HASHER), tenants=["acme", "globex"])
    headers = {}
    for tenant, name, role in PEOPLE:
        user = people.add_user(tenant, name, role, PASSWORD)
        issued = people.create_token(user.tenant, user.id, "all", None)
        assert issued is not None
        headers[name] = {"Authorization": f"Bearer {issued.secret}"}
    port = RouterPort({"amal": ("sales",), "tara": ("sales",)}, StateRules(("break", "lunch")))
    globex = RouterPort({"gus": ("help",)}, StateRules())
    with TestClient(create_api(store, TOKENS, people=people, agents={"acme": port, "globex": globex})) as client:
        yield client, headers, people, port


def test_an_agent_sets_only_its_own_state(roles: tuple[TestClient, dict[str, dict[str, str]], PeopleService,
                                                       RouterPort]) -> None:
    client, headers, people, port = roles
    r = client.put("/api/v1/agents/amal/state", json={"state": "logged_in"}, headers=headers["amal"])
    assert r.status_code == 200 and r.json()["state"] == "available"
    r = client.put("/api/v1/agents/tara/state", json={"state": "logged_in"}, headers=headers["amal"])
    assert r.status_code == 403 and error(r.json()) == ("forbidden", "an agent sets only its own state, "
                                                                     "not agent 'tara''s")
    assert client.get("/api/v1/agents/tara", headers=headers["amal"]).json()["state"] == "logged_out"
    assert [(a.by, a.forced) for a in port.asked] == [("amal", False)]
    assert all(e.action != "agent.state" for e in people.audit_log("acme"))  # one's own state is no supervision


def test_a_supervisor_forces_anyones_state_and_it_is_audited(
        roles: tuple[TestClient, dict[str, dict[str, str]], PeopleService, RouterPort]) -> None:
    client, headers, people, port = roles
    r = client.put("/api/v1/agents/tara/state", json={"state": "not_ready", "reason": "lunch"},
                   headers=headers["sami"])
    assert r.status_code == 200 and (r.json()["state"], r.json()["reason"]) == ("not_ready", "lunch")
    assert port.asked[-1].by == "sami" and port.asked[-1].forced
    (entry,) = [e for e in people.audit_log("acme") if e.action == "agent.state"]
    assert (entry.actor, entry.target, entry.detail) == ("sami", "tara", {"state": "not_ready", "reason": "lunch"})
    # Another tenant's agent, to an administrator of that other tenant: the 404 of an agent that does not exist.
    r = client.put("/api/v1/agents/tara/state", json={"state": "logged_out"}, headers=headers["gina"])
    assert r.status_code == 404 and error(r.json()) == ("not_found", "no agent 'tara'")
    assert client.get("/api/v1/agents", headers=headers["gina"]).json()[0]["agent"] == "gus"


def test_the_openapi_schema_gives_every_refusal_the_error_shape(agents_client: TestClient) -> None:
    paths = agents_client.get("/api/v1/openapi.json").json()["paths"]
    for path, method, statuses in [("/api/v1/agents", "get", ("401", "403", "404", "422")),
                                   ("/api/v1/agents/{name}", "get", ("401", "403", "404", "422")),
                                   ("/api/v1/agents/{name}/state", "put", ("401", "403", "404", "409", "422"))]:
        responses = paths[path][method]["responses"]
        for status in statuses:
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut"), (
                path, status)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=6)
FIELDS = st.sampled_from(["state", "reason", "queues", "by"])
STATES = st.sampled_from(["logged_in", "available", "not_ready", "logged_out", "on_call", ""])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(FIELDS, JSON | STATES | st.lists(st.sampled_from(["sales", "support", "x"])),
                            max_size=4) | JSON)
def test_any_body_gets_an_answer_in_the_error_shape_never_a_server_error(agents_client: TestClient,
                                                                        body: Any) -> None:
    r = agents_client.put("/api/v1/agents/1001/state", json=body, headers=auth())
    assert r.status_code in {200, 409, 422}, (body, r.text)
    if r.status_code >= 400:
        error(r.json())

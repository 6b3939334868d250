"""/api/v1/config: the center's configuration objects over HTTP (`hatif.web.config` over `hatif.center`).

Who may (config:read for supervisors and administrators, config:admin for administrators), which tenant (another
tenant's objects are 404), what a refusal says (check-config's messages), and that every change is audited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from people_world import PASSWORD, PEOPLE, World

from hatif.center import Center, export_center
from hatif.config import ConfigError, load_config, parse_config
from hatif.people import PeopleService
from hatif.store import Store
from hatif.store.configrows import ConfigRows
from hatif.web import create_api

BOOT = """
tenants:
  - name: acme
    users:
      - {username: "1001", password: secret-1001}
    dialplan:
      - {match: '^(1\\d{3})$', to: extension}
    queues:
      - {name: sales}
    agents:
      - {user: "1001", queues: [sales]}
  - name: globex
    users:
      - {username: "2001", password: secret-2001}
"""
TOKENS = {"acme-installation-token-1": "acme"}
BAD_FLOW: dict[str, Any] = {"start": "hello", "nodes": {"hello": {"type": "say", "text": "Hi", "next": "menu"}}}
FLOW: dict[str, Any] = {"start": "hello", "nodes": {"hello": {"type": "say", "text": "Hi", "next": "line"},
                                                   "line": {"type": "route", "to": "queue:sales"}}}


@pytest.fixture
def center(store: Store, people: PeopleService) -> Center:
    center = Center(parse_config(BOOT), ConfigRows(store), audit=people.audit)
    asyncio.run(center.start())
    return center


@pytest.fixture
def admin(store: Store, people: PeopleService, center: Center) -> Iterator[World]:
    users = {name: people.add_user(tenant, name, role, PASSWORD) for tenant, name, role in PEOPLE}
    tokens = {}
    for name, user in users.items():
        issued = people.create_token(user.tenant, user.id, "all", None)
        tokens[name] = issued.secret
    with TestClient(create_api(store, TOKENS, people=people, config=center)) as client:
        yield World(client, people, users, tokens)


def test_an_administrator_creates_changes_lists_and_deletes_a_queue(admin: World) -> None:
    c, adel = admin.client, admin.bearer("adel")
    r = c.put("/api/v1/config/queues/support", json={"strategy": "round_robin"}, headers=adel)
    assert r.status_code == 201, r.text
    assert r.json()["body"] == {"name": "support", "strategy": "round_robin"} and r.json()["version"] == 1
    r = c.put("/api/v1/config/queues/support", json={"strategy": "longest_idle"}, headers=adel)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["updated_by"] == "adel"
    assert [o["name"] for o in c.get("/api/v1/config/queues", headers=adel).json()] == ["sales", "support"]
    assert c.get("/api/v1/config/queues/support", headers=adel).json()["body"]["strategy"] == "longest_idle"
    assert c.delete("/api/v1/config/queues/support", headers=adel).status_code == 204
    assert c.get("/api/v1/config/queues/support", headers=adel).status_code == 404
    assert c.delete("/api/v1/config/queues/support", headers=adel).status_code == 404


def test_an_invalid_flow_gets_check_configs_message_and_changes_nothing(admin: World, store: Store,
                                                                       tmp_path: Path) -> None:
    c, adel = admin.client, admin.bearer("adel")
    r = c.put("/api/v1/config/flows/main", json=BAD_FLOW, headers=adel)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    center = export_center(ConfigRows(store))
    center["tenants"][0]["flows"] = {"main": BAD_FLOW}
    path = tmp_path / "center.yaml"
    path.write_text(yaml.safe_dump(center, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    said = [m.split(": ", 1)[1] for m in refused.value.messages]  # check-config's lines without file:line
    assert error["code"] == "invalid_config"
    assert [p["message"] for p in error["problems"]] == said
    assert error["problems"][0]["location"] == "flows.main.nodes.hello.next"
    assert error["message"] == "; ".join(said)
    assert c.get("/api/v1/config/flows/main", headers=adel).status_code == 404


def test_the_dial_plan_is_put_whole_and_a_flow_to_a_queue_is_taken(admin: World, center: Center) -> None:
    c, adel = admin.client, admin.bearer("adel")
    assert c.put("/api/v1/config/flows/main", json=FLOW, headers=adel).status_code == 201
    rules = [{"match": "^700$", "to": "flow:main"}, {"match": "^(1\\d{3})$", "to": "extension"}]
    r = c.put("/api/v1/config/dialplan", json=rules, headers=adel)
    assert r.status_code == 200, r.text
    assert c.get("/api/v1/config/dialplan", headers=adel).json()[0]["body"] == rules
    acme = center.config.tenant("acme")
    assert acme is not None and "main" in acme.flows
    route = acme.route("700")
    assert route is not None and route.target == "flow:main"
    assert c.put("/api/v1/config/dialplan/x", json=rules, headers=adel).status_code == 404
    assert c.put("/api/v1/config/queues", json={}, headers=adel).status_code == 404


def test_deleting_what_is_still_referred_to_is_refused(admin: World) -> None:
    r = admin.client.delete("/api/v1/config/queues/sales", headers=admin.bearer("adel"))
    assert r.status_code == 422
    assert r.json()["error"]["problems"] == [{"location": "agents[0].queues[0]",
                                              "message": "tenants[0].agents[0].queues[0]: no queue 'sales' in "
                                                         "tenant 'acme'"}]


def test_roles_scopes_and_tenants(admin: World) -> None:
    c = admin.client
    assert c.get("/api/v1/config/queues").status_code == 401
    assert c.get("/api/v1/config/queues", headers=admin.bearer("amal")).status_code == 403
    assert c.get("/api/v1/config/queues", headers=admin.bearer("sami")).status_code == 200
    r = c.put("/api/v1/config/queues/x", json={}, headers=admin.bearer("sami"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert c.get("/api/v1/config/queues/sales", headers=admin.bearer("gina")).status_code == 404
    assert c.get("/api/v1/config/queues/sales?tenant=acme", headers=admin.bearer("gina")).status_code == 404
    assert c.put("/api/v1/config/queues/x?tenant=acme", json={}, headers=admin.bearer("gina")).status_code == 404
    assert c.get("/api/v1/config/queues", headers=admin.bearer("gina")).json() == []
    assert c.get("/api/v1/config/queues/sales?tenant=acme", headers=admin.bearer("root")).status_code == 200
    assert c.get("/api/v1/config/nonsense", headers=admin.bearer("adel")).status_code == 404
    installation = {"Authorization": f"Bearer {next(iter(TOKENS))}"}
    assert c.get("/api/v1/config/queues", headers=installation).status_code == 403


def test_every_change_is_audited(admin: World, people: PeopleService) -> None:
    c, adel = admin.client, admin.bearer("adel")
    c.put("/api/v1/config/queues/support", json={}, headers=adel)
    c.put("/api/v1/config/flows/main", json=BAD_FLOW, headers=adel)  # refused: nothing to audit
    c.delete("/api/v1/config/queues/support", headers=adel)
    entries = sorted((e for e in people.audit_log("acme") if e.action.startswith("config.")), key=lambda e: e.at)
    assert [(e.action, e.target, e.actor, e.address) for e in entries] == [
        ("config.created", "queues support", "adel", "testclient"),
        ("config.deleted", "queues support", "adel", "testclient")]
    assert entries[0].actor_id == admin.users["adel"].id


def test_users_are_answered_without_their_secrets(admin: World) -> None:
    c, adel = admin.client, admin.bearer("adel")
    body = c.get("/api/v1/config/users/1001", headers=adel).json()["body"]
    assert body == {"username": "1001", "extension": "1001"}
    r = c.put("/api/v1/config/users/1001", json={**body, "display_name": "Reception"}, headers=adel)
    assert r.status_code == 200 and "password" not in r.json()["body"]
    r = c.put("/api/v1/config/users/1009", json={}, headers=adel)
    assert r.status_code == 422
    assert r.json()["error"]["problems"][0]["location"] == "users[1].password"


def test_a_session_needs_the_csrf_token_to_change(admin: World) -> None:
    client, csrf = admin.session("adel")
    assert client.put("/api/v1/config/queues/x", json={}).status_code == 403
    assert client.put("/api/v1/config/queues/x", json={}, headers={"X-CSRF-Token": csrf}).status_code == 201


def test_a_platform_owner_creates_a_tenant_by_writing_its_settings(admin: World, center: Center) -> None:
    c, root = admin.client, admin.bearer("root")
    r = c.put("/api/v1/config/settings?tenant=initech", json={"domains": ["initech.test"]}, headers=root)
    assert r.status_code == 201, r.text
    assert center.config.tenant("initech") is not None
    assert center.config.tenant_for_domain("initech.test").name == "initech"  # type: ignore[union-attr]
    r = c.put("/api/v1/config/queues/line?tenant=initech", json={}, headers=root)
    assert r.status_code == 201, r.text
    r = c.put("/api/v1/config/settings?tenant=Not_A_Name", json={}, headers=root)
    assert r.status_code == 422
    assert r.json()["error"]["problems"][0]["location"] == "name"
    assert c.put("/api/v1/config/queues/x?tenant=nobody", json={}, headers=root).status_code == 404
    r = c.put("/api/v1/config/settings", json={"domains": ["acme.test"]}, headers=admin.bearer("adel"))
    assert r.status_code == 200  # an administrator changes its own tenant's settings, creates none
    r = c.put("/api/v1/config/settings?tenant=initech2", json={}, headers=admin.bearer("adel"))
    assert r.status_code == 404

"""People over HTTP: signing in (one answer for every refusal, the lock-out), the session cookie's flags, CSRF on
every unsafe request of a session, token scopes and revocation, users and the audit log with the client's
address."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from people_world import PASSWORD, World

from hatif.people.model import LOCKOUT_FAILURES
from hatif.store import Store, VoicemailMessage

REFUSED = {"error": {"code": "sign_in_refused",
                     "message": "wrong tenant, name or password, or too many failed attempts: try again later"}}


def sign_in(client: TestClient, name: str, password: str = PASSWORD, tenant: str = "acme") -> Any:
    return client.post("/api/v1/session", json={"tenant": tenant, "name": name, "password": password})


# -- signing in ----------------------------------------------------------------------------------------------


def test_sign_in_returns_who_and_the_csrf_token(world: World) -> None:
    r = sign_in(world.client, "sami")
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["name"] == "sami" and body["user"]["role"] == "supervisor" and body["via"] == "session"
    assert "calls:read" in body["scopes"] and "users:admin" not in body["scopes"]
    me = world.client.get("/api/v1/session")
    assert me.status_code == 200 and me.json()["csrf_token"] == body["csrf_token"]
    assert "password" not in r.text and "hash" not in r.text


@pytest.mark.parametrize(("tenant", "name", "password"), [
    ("acme", "sami", "wrong password"), ("acme", "nobody", PASSWORD), ("globex", "sami", PASSWORD),
    ("acme", "sami", ""), ("*", "sami", PASSWORD), ("acme", "sa\x00mi", PASSWORD), ("ac\x00me", "sami", PASSWORD),
])
def test_every_refused_sign_in_is_the_same_401(world: World, tenant: str, name: str, password: str) -> None:
    r = sign_in(world.client, name, password, tenant)
    assert (r.status_code, r.json()) == (401, REFUSED)
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize("name", ["sami", "nobody"])
def test_lock_out_is_the_same_answer_for_known_and_unknown_names(world: World, name: str) -> None:
    for _ in range(LOCKOUT_FAILURES):
        assert sign_in(world.client, name, "wrong password").json() == REFUSED
    r = sign_in(world.client, name)  # the right password (for sami) while locked
    assert (r.status_code, r.json()) == (401, REFUSED)
    assert sign_in(world.client, "amal").status_code == 200  # another name is not locked


def test_a_sign_in_body_with_unknown_fields_is_422(world: World) -> None:
    r = world.client.post("/api/v1/session", json={"tenant": "acme", "name": "sami", "password": PASSWORD,
                                                   "role": "administrator"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_session_cookie_flags_over_http(world: World) -> None:
    cookie = sign_in(world.client, "sami").headers["set-cookie"]
    name, _, flags = cookie.partition(";")
    assert name.startswith("hatif_session=")
    lowered = [f.strip().lower() for f in flags.split(";")]
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "secure" not in lowered and "max-age=43200" in lowered


def test_session_cookie_over_https_is_a_secure_host_cookie(world: World) -> None:
    client = TestClient(world.client.app, base_url="https://testserver")
    cookie = sign_in(client, "sami").headers["set-cookie"]
    lowered = [f.strip().lower() for f in cookie.split(";")]
    assert cookie.startswith("__Host-hatif_session=")
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= set(lowered)
    assert not any(f.startswith("domain=") for f in lowered)
    assert client.get("/api/v1/session").json()["user"]["name"] == "sami"


def test_signing_in_again_ends_the_old_session(world: World) -> None:
    client, _ = world.session("sami")
    old = client.cookies["hatif_session"]
    assert sign_in(client, "sami").status_code == 200
    assert client.cookies["hatif_session"] != old
    stale = TestClient(world.client.app, cookies={"hatif_session": old})
    assert stale.get("/api/v1/session").status_code == 401


def test_sign_out_ends_the_session(world: World) -> None:
    client, csrf = world.session("sami")
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/session").status_code == 401


def test_an_unknown_session_cookie_is_401(world: World) -> None:
    client = TestClient(world.client.app, cookies={"hatif_session": "forged"})
    r = client.get("/api/v1/session")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


# -- CSRF ----------------------------------------------------------------------------------------------------


def _unsafe(world: World, store: Store, tmp_path: Any, make_wav: Any) -> list[tuple[str, str, dict[str, Any] | None]]:
    path = tmp_path / "vm" / "1.wav"
    sha = make_wav(path)
    from datetime import UTC, datetime
    message = store.add_voicemail(VoicemailMessage(tenant="acme", mailbox="1001", caller="+97155123",
                                                   caller_name=None, received=datetime.now(UTC), seconds=0.5,
                                                   path=str(path), sha256=sha))
    tara = world.users["tara"].id
    issued = world.people.create_token("acme", tara, "old", None)
    assert issued is not None
    return [
        ("POST", f"/api/v1/voicemail/1001/{message}/heard", {"heard": True}),
        ("DELETE", f"/api/v1/voicemail/1001/{message}", None),
        ("POST", "/api/v1/users", {"name": "nina", "role": "agent", "password": PASSWORD}),
        ("PATCH", f"/api/v1/users/{tara}", {"role": "supervisor"}),
        ("POST", f"/api/v1/users/{tara}/tokens", {"name": "ci"}),
        ("DELETE", f"/api/v1/users/{tara}/tokens/{issued.token.id}", None),
        ("DELETE", f"/api/v1/users/{tara}", None),
        ("DELETE", "/api/v1/session", None),
    ]


@pytest.mark.parametrize("csrf", ["missing", "wrong"])
def test_every_unsafe_request_of_a_session_needs_its_csrf_token(world: World, store: Store, tmp_path: Any,
                                                              make_wav: Any, csrf: str) -> None:
    client, token = world.session("adel")
    headers = {} if csrf == "missing" else {"X-CSRF-Token": token[:-1] + ("0" if token[-1] != "0" else "1")}
    for method, path, body in _unsafe(world, store, tmp_path, make_wav):
        r = client.request(method, path, json=body, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf", (method, path, r.text)
    assert client.get("/api/v1/users").status_code == 200  # safe requests need no token


def test_the_right_csrf_token_passes_every_unsafe_request(world: World, store: Store, tmp_path: Any,
                                                         make_wav: Any) -> None:
    client, token = world.session("adel")
    for method, path, body in _unsafe(world, store, tmp_path, make_wav):
        r = client.request(method, path, json=body, headers={"X-CSRF-Token": token})
        assert r.status_code in (200, 201, 204), (method, path, r.text)


def test_another_sessions_csrf_token_is_refused(world: World) -> None:
    client, _ = world.session("adel")
    _, other = world.session("adel")
    r = client.post("/api/v1/users", json={"name": "nina", "role": "agent", "password": PASSWORD},
                    headers={"X-CSRF-Token": other})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"


def test_a_bearer_token_needs_no_csrf_token(world: World) -> None:
    r = world.client.post("/api/v1/users", json={"name": "nina", "role": "agent", "password": PASSWORD},
                          headers=world.bearer("adel"))
    assert r.status_code == 201


# -- tokens --------------------------------------------------------------------------------------------------


def test_a_token_without_the_users_scope_is_403(world: World) -> None:
    client, csrf = world.session("sami")
    sami = world.users["sami"].id
    r = client.post(f"/api/v1/users/{sami}/tokens", json={"name": "board", "scopes": ["calls:read"]},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201
    secret = r.json()["secret"]
    assert r.json()["token"]["scopes"] == ["calls:read"] and secret.startswith("hatif_")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert world.client.get("/api/v1/calls", headers=bearer).status_code == 200
    r = world.client.get("/api/v1/users", headers=bearer)
    assert r.status_code == 403 and r.json()["error"] == {
        "code": "forbidden", "message": "this needs the scope users:read, which this role or token does not have"}
    assert world.client.get("/api/v1/users", headers=world.bearer("sami")).status_code == 200  # the role has it
    listed = client.get(f"/api/v1/users/{sami}/tokens").json()
    assert [t["name"] for t in listed] == ["all", "board"] and secret not in str(listed)


def test_a_token_cannot_ask_for_more_than_the_role_grants(world: World) -> None:
    client, csrf = world.session("sami")
    r = client.post(f"/api/v1/users/{world.users['sami'].id}/tokens",
                    json={"name": "x", "scopes": ["users:admin"]}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["error"] == {
        "code": "invalid_token", "message": "the role supervisor does not grant users:admin"}


def test_a_token_mints_no_token_for_itself(world: World) -> None:
    sami = world.users["sami"].id
    r = world.client.post(f"/api/v1/users/{sami}/tokens", json={"name": "x"}, headers=world.bearer("sami"))
    assert r.status_code == 403


def test_a_revoked_token_is_401(world: World) -> None:
    bearer = world.bearer("sami")
    assert world.client.get("/api/v1/calls", headers=bearer).status_code == 200
    sami = world.users["sami"].id
    (token,) = world.client.get(f"/api/v1/users/{sami}/tokens", headers=world.bearer("adel")).json()
    r = world.client.delete(f"/api/v1/users/{sami}/tokens/{token['id']}", headers=world.bearer("adel"))
    assert r.status_code == 204
    r = world.client.get("/api/v1/calls", headers=bearer)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_a_disabled_users_token_is_401(world: World) -> None:
    tara = world.users["tara"].id
    assert world.client.patch(f"/api/v1/users/{tara}", json={"disabled": True},
                              headers=world.bearer("adel")).status_code == 200
    assert world.client.get("/api/v1/session", headers=world.bearer("tara")).status_code == 401


def test_installation_tokens_read_records_but_not_people(world: World, acme: dict[str, str]) -> None:
    assert world.client.get("/api/v1/calls", headers=acme).status_code == 200
    me = world.client.get("/api/v1/session", headers=acme).json()
    assert me == {"tenant": "acme", "user": None, "via": "installation", "csrf_token": None,
                  "scopes": ["calls:read", "events:read", "voicemail:read", "voicemail:write"]}
    assert world.client.get("/api/v1/users", headers=acme).status_code == 403


# -- users and the audit log ---------------------------------------------------------------------------------


def test_users_added_changed_and_deleted_are_audited_with_the_address(world: World) -> None:
    admin = world.bearer("adel")
    r = world.client.post("/api/v1/users", json={"name": "nina", "role": "agent", "password": PASSWORD},
                          headers=admin)
    assert r.status_code == 201
    nina = r.json()["id"]
    assert world.client.patch(f"/api/v1/users/{nina}", json={"role": "supervisor"}, headers=admin).json()[
        "role"] == "supervisor"
    r = world.client.post(f"/api/v1/users/{nina}/tokens", json={"name": "ci"}, headers=admin)
    assert r.status_code == 201
    token = r.json()["token"]["id"]
    assert world.client.delete(f"/api/v1/users/{nina}/tokens/{token}", headers=admin).status_code == 204
    assert world.client.delete(f"/api/v1/users/{nina}", headers=admin).status_code == 204
    assert world.client.get(f"/api/v1/users/{nina}", headers=admin).status_code == 404
    entries = world.client.get("/api/v1/audit", headers=admin).json()
    mine = [e for e in entries if e["target"] == f"user {nina} (nina)"]
    assert [e["action"] for e in mine] == ["user.deleted", "token.revoked", "token.created", "user.changed",
                                           "user.added"]
    assert {(e["actor"], e["actor_id"], e["address"], e["tenant"]) for e in mine} == {
        ("adel", world.users["adel"].id, "testclient", "acme")}
    assert world.client.get("/api/v1/audit", headers=world.bearer("gina")).json() == [
        e for e in world.client.get("/api/v1/audit?tenant=globex", headers=world.bearer("root")).json()]
    assert all(e["tenant"] == "globex" for e in world.client.get("/api/v1/audit",
                                                                 headers=world.bearer("gina")).json())


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"name": "tara", "role": "agent", "password": PASSWORD}, "duplicate_name",
     "a user named 'tara' already exists in tenant 'acme'"),
    ({"name": "nina", "role": "agent", "password": "short"}, "invalid_user",
     "the password is too short: at least 10 characters are needed"),
    ({"name": " nina", "role": "agent", "password": PASSWORD}, "invalid_user",
     "a user name is 1 to 200 printable characters without surrounding white space"),
    ({"name": "nina", "role": "owner", "password": PASSWORD}, "invalid_user",
     "an owner belongs to the platform tenant '*', not to tenant 'acme'"),
])
def test_a_refused_user_names_the_problem(world: World, body: dict[str, str], code: str, message: str) -> None:
    r = world.client.post("/api/v1/users", json=body, headers=world.bearer("adel"))
    assert r.status_code in (409, 422) and r.json() == {"error": {"code": code, "message": message}}


def test_the_last_administrator_cannot_be_demoted(world: World) -> None:
    gina = world.users["gina"].id
    r = world.client.patch(f"/api/v1/users/{gina}", json={"role": "agent"}, headers=world.bearer("gina"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_administrator"


def test_an_owner_acts_in_any_tenant(world: World) -> None:
    root = world.bearer("root")
    r = world.client.post("/api/v1/users?tenant=globex", json={"name": "gil", "role": "agent",
                                                                "password": PASSWORD}, headers=root)
    assert r.status_code == 201 and r.json()["tenant"] == "globex"
    assert {u["name"] for u in world.client.get("/api/v1/users?tenant=globex", headers=root).json()} == {
        "gina", "gus", "gil"}
    assert [u["name"] for u in world.client.get("/api/v1/users", headers=root).json()] == ["root"]
    assert world.client.get("/api/v1/users?tenant=ac%00me", headers=root).status_code == 404
    (entry,) = [e for e in world.client.get("/api/v1/audit?tenant=globex", headers=root).json()
                if e["target"].endswith("(gil)")]
    assert (entry["action"], entry["actor"]) == ("user.added", "root@*")


def test_the_openapi_schema_lists_the_people_routes(world: World) -> None:
    paths = world.client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/session", "/api/v1/users", "/api/v1/users/{user_id}", "/api/v1/users/{user_id}/tokens",
            "/api/v1/users/{user_id}/tokens/{token_id}", "/api/v1/audit"} <= set(paths)
    created = paths["/api/v1/users/{user_id}/tokens"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("/NewTokenOut")


def test_the_openapi_schema_gives_every_refusal_the_error_shape(world: World) -> None:
    paths = world.client.get("/api/v1/openapi.json").json()["paths"]
    for path in ("/api/v1/users", "/api/v1/users/{user_id}", "/api/v1/users/{user_id}/tokens", "/api/v1/audit"):
        for method, operation in paths[path].items():
            for status in ("401", "403", "404", "422"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith("/ErrorOut"), (method, path, status)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=6)
FIELDS = st.sampled_from(["tenant", "name", "password", "role", "scopes", "expires", "disabled", "heard"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(FIELDS, JSON | st.text(max_size=40), max_size=5) | JSON)
def test_any_body_gets_an_answer_in_the_error_shape_never_a_server_error(world: World, body: Any) -> None:
    admin = world.bearer("adel")
    tara = world.users["tara"].id
    for method, path, allowed in [("POST", "/api/v1/session", {200, 401, 422}),
                                  ("POST", "/api/v1/users", {201, 409, 422}),
                                  ("PATCH", f"/api/v1/users/{tara}", {200, 409, 422}),
                                  ("POST", f"/api/v1/users/{tara}/tokens", {201, 422})]:
        r = world.client.request(method, path, json=body, headers={} if path.endswith("session") else admin)
        assert r.status_code in allowed, (method, path, body, r.text)
        if r.status_code >= 400:
            assert set(r.json()["error"]) == {"code", "message"}

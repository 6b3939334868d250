"""The HTTP API against a real Store: bearer tokens, tenant scoping (another tenant's id is 404), CDRs, voicemail
listened to, marked and deleted, the queue log, and 422s that name the bad parameter."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hatif.store import CallRecord, LegRecord, QueueLogEntry, Store, VoicemailMessage
from hatif.web import create_api
from hatif.web.auth import TokenAuth

T0 = datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
H = dict[str, str]


def add_call(store: Store, call_id: str, tenant: str = "acme", minutes: int = 0) -> CallRecord:
    started = T0 + timedelta(minutes=minutes)
    record = CallRecord(
        call_id=call_id, tenant=tenant, caller="+982188776655", called="100", started=started, outcome="answered",
        answered=started + timedelta(seconds=5), ended=started + timedelta(seconds=65), duration=65.0,
        talk_seconds=60.0, recording=f"/srv/secret/{call_id}.wav", recording_sha256="ef" * 32,
        variables={"lang": "ar", "اسم": "سارة"},
        legs=[LegRecord("a", "inbound", "+982188776655", started, started, started + timedelta(seconds=65), "normal"),
              LegRecord("b", "outbound", "1001", started, started + timedelta(seconds=5),
                        started + timedelta(seconds=65), "normal")],
    )
    store.add_call(record)
    return record


def add_message(store: Store, tmp_path: Path, make_wav: Callable[..., str], mailbox: str = "1001",
                tenant: str = "acme", minutes: int = 0, heard: bool = False) -> VoicemailMessage:
    path = tmp_path / "voicemail" / tenant / mailbox / f"{minutes}.wav"
    sha = make_wav(path, seconds=0.25)
    message = VoicemailMessage(tenant=tenant, mailbox=mailbox, caller="+97155123", caller_name="علی",
                               received=T0 + timedelta(minutes=minutes), seconds=0.25, path=str(path), sha256=sha,
                               call_id=f"c{minutes}", heard=heard)
    store.add_voicemail(message)
    return message


# -- auth ----------------------------------------------------------------------------------------------------


def test_health_needs_no_token(client: TestClient) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer"}, {"Authorization": "Basic YWNtZTp4"},
    {"Authorization": "Bearer acme-token-3f9a1"}, {"Authorization": "Bearer acme-token-3f9a1cX"},
    {"Authorization": "bearer"},
])
@pytest.mark.parametrize("path", ["/api/v1/calls", "/api/v1/calls/x", "/api/v1/voicemail/1001",
                                  "/api/v1/voicemail/1001/1/audio", "/api/v1/queue-log"])
def test_missing_or_wrong_token_is_the_same_401(client: TestClient, headers: H, path: str) -> None:
    r = client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": "unauthorized",
                                  "message": "a valid API token is required: Authorization: Bearer <token>"}}
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_scheme_is_case_insensitive(client: TestClient) -> None:
    assert client.get("/api/v1/calls", headers={"Authorization": "bearer  acme-token-3f9a1c"}).status_code == 200


def test_token_auth_refuses_empty_tokens() -> None:
    with pytest.raises(ValueError, match="empty"):
        TokenAuth({"": "acme"})
    with pytest.raises(ValueError, match="white space"):
        TokenAuth({"a b": "acme"})
    assert TokenAuth({}).tenant_of("Bearer x") is None


# -- calls ---------------------------------------------------------------------------------------------------


def test_calls_newest_first_with_legs_scoped_to_the_tenant(client: TestClient, store: Store, acme: H) -> None:
    for i in range(3):
        add_call(store, f"call-{i}", minutes=i)
    add_call(store, "theirs", tenant="globex", minutes=10)
    r = client.get("/api/v1/calls", headers=acme)
    assert r.status_code == 200
    body = r.json()
    assert [c["call_id"] for c in body] == ["call-2", "call-1", "call-0"]
    first = body[0]
    assert first["started"] == "2026-03-20T08:02:00Z"
    assert [leg["leg_id"] for leg in first["legs"]] == ["a", "b"]
    assert first["variables"] == {"lang": "ar", "اسم": "سارة"}
    assert first["has_recording"] is True and first["recording_sha256"] == "ef" * 32
    assert "/srv/secret" not in r.text  # server paths never leave the server


def test_calls_limit_and_since(client: TestClient, store: Store, acme: H) -> None:
    for i in range(4):
        add_call(store, f"call-{i}", minutes=i)
    assert [c["call_id"] for c in client.get("/api/v1/calls?limit=2", headers=acme).json()] == ["call-3", "call-2"]
    r = client.get("/api/v1/calls", params={"since": "2026-03-20T08:02:00Z"}, headers=acme)
    assert [c["call_id"] for c in r.json()] == ["call-3", "call-2"]
    r = client.get("/api/v1/calls", params={"since": "2026-03-20T11:32:00+03:30"}, headers=acme)
    assert [c["call_id"] for c in r.json()] == ["call-3", "call-2"]
    r = client.get("/api/v1/calls", params={"since": "2026-03-20T08:03:00"}, headers=acme)  # no zone: UTC
    assert [c["call_id"] for c in r.json()] == ["call-3"]


@pytest.mark.parametrize(("query", "param"), [
    ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=100000", "limit"), ("since=yesterday", "since"),
])
def test_bad_query_parameters_are_422_naming_the_parameter(client: TestClient, acme: H, query: str,
                                                           param: str) -> None:
    r = client.get(f"/api/v1/calls?{query}", headers=acme)
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["code"] == "invalid_request"
    assert f"query parameter '{param}'" in body["error"]["message"]
    assert body["detail"][0]["loc"] == ["query", param]


def test_one_call_and_another_tenants_call_is_404(client: TestClient, store: Store, acme: H, globex: H) -> None:
    add_call(store, "mine")
    add_call(store, "theirs", tenant="globex")
    r = client.get("/api/v1/calls/mine", headers=acme)
    assert r.status_code == 200 and r.json()["call_id"] == "mine"
    theirs = client.get("/api/v1/calls/theirs", headers=acme)
    absent = client.get("/api/v1/calls/absent", headers=acme)
    assert theirs.status_code == absent.status_code == 404
    assert theirs.json()["error"]["code"] == absent.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/calls/theirs", headers=globex).status_code == 200


# -- voicemail -----------------------------------------------------------------------------------------------


def test_voicemail_list_and_new_only(client: TestClient, store: Store, tmp_path: Path,
                                     make_wav: Callable[..., str], acme: H) -> None:
    old = add_message(store, tmp_path, make_wav, minutes=0)
    heard = add_message(store, tmp_path, make_wav, minutes=1, heard=True)
    new = add_message(store, tmp_path, make_wav, minutes=2)
    add_message(store, tmp_path, make_wav, mailbox="1002", minutes=3)
    add_message(store, tmp_path, make_wav, tenant="globex", minutes=4)
    body = client.get("/api/v1/voicemail/1001", headers=acme).json()
    assert [m["id"] for m in body] == [new.id, heard.id, old.id]
    first = body[0]
    assert first == {
        "id": new.id, "mailbox": "1001", "caller": "+97155123", "caller_name": "علی",
        "received": "2026-03-20T08:02:00Z", "seconds": 0.25, "heard": False, "sha256": new.sha256,
        "call_id": "c2", "url": f"/api/v1/voicemail/1001/{new.id}/audio",
    }
    assert "path" not in first
    new_only = client.get("/api/v1/voicemail/1001?new=true", headers=acme).json()
    assert [m["id"] for m in new_only] == [new.id, old.id]
    assert client.get("/api/v1/voicemail/1001?new=perhaps", headers=acme).status_code == 422
    assert client.get("/api/v1/voicemail/9999", headers=acme).json() == []


def test_listen_to_a_message(client: TestClient, store: Store, tmp_path: Path, make_wav: Callable[..., str],
                             acme: H) -> None:
    message = add_message(store, tmp_path, make_wav)
    listed = client.get("/api/v1/voicemail/1001", headers=acme).json()[0]
    r = client.get(listed["url"], headers=acme)
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/wav"
    assert r.content[:4] == b"RIFF" and r.content[8:12] == b"WAVE"
    assert hashlib.sha256(r.content).hexdigest() == message.sha256 == listed["sha256"]
    assert r.headers["content-disposition"].startswith("inline")
    single = client.get(f"/api/v1/voicemail/1001/{message.id}", headers=acme)
    assert single.status_code == 200 and single.json() == listed


def test_audio_of_another_tenant_or_mailbox_or_a_gone_file_is_404(
    client: TestClient, store: Store, tmp_path: Path, make_wav: Callable[..., str], acme: H, globex: H
) -> None:
    message = add_message(store, tmp_path, make_wav)
    url = f"/api/v1/voicemail/1001/{message.id}/audio"
    assert client.get(url, headers=globex).status_code == 404
    assert client.get(f"/api/v1/voicemail/1002/{message.id}/audio", headers=acme).status_code == 404
    assert client.get(f"/api/v1/voicemail/1001/{message.id}", headers=globex).status_code == 404
    Path(message.path).unlink()
    r = client.get(url, headers=acme)
    assert r.status_code == 404 and r.json()["error"]["code"] == "audio_missing"
    assert client.get("/api/v1/voicemail/1001/notanumber/audio", headers=acme).status_code == 422


def test_mark_heard_and_new_again(client: TestClient, store: Store, tmp_path: Path, make_wav: Callable[..., str],
                                  acme: H, globex: H) -> None:
    message = add_message(store, tmp_path, make_wav)
    url = f"/api/v1/voicemail/1001/{message.id}/heard"
    assert client.post(url, json={"heard": True}, headers=globex).status_code == 404
    assert client.post(url, json={"heard": True}).status_code == 401
    r = client.post(url, json={"heard": True}, headers=acme)
    assert r.status_code == 200 and r.json()["heard"] is True
    got = store.voicemail("acme", message.id or -1)
    assert got is not None and got.heard
    assert client.get("/api/v1/voicemail/1001?new=true", headers=acme).json() == []
    r = client.post(url, json={"heard": False}, headers=acme)
    assert r.status_code == 200 and r.json()["heard"] is False
    bad = client.post(url, json={"heard": "maybe"}, headers=acme)
    assert bad.status_code == 422 and "heard" in bad.json()["error"]["message"]
    assert client.post(url, json={}, headers=acme).status_code == 422


def test_delete_removes_record_and_file(client: TestClient, store: Store, tmp_path: Path,
                                        make_wav: Callable[..., str], acme: H, globex: H) -> None:
    message = add_message(store, tmp_path, make_wav)
    keep = add_message(store, tmp_path, make_wav, minutes=1)
    url = f"/api/v1/voicemail/1001/{message.id}"
    assert client.delete(url, headers=globex).status_code == 404
    assert client.delete(f"/api/v1/voicemail/1002/{message.id}", headers=acme).status_code == 404
    assert Path(message.path).exists()
    r = client.delete(url, headers=acme)
    assert r.status_code == 204 and r.content == b""
    assert not Path(message.path).exists()
    assert store.voicemail("acme", message.id or -1) is None
    assert client.delete(url, headers=acme).status_code == 404
    assert [m["id"] for m in client.get("/api/v1/voicemail/1001", headers=acme).json()] == [keep.id]
    assert Path(keep.path).exists()


def test_delete_when_the_file_is_already_gone(client: TestClient, store: Store, tmp_path: Path,
                                              make_wav: Callable[..., str], acme: H) -> None:
    message = add_message(store, tmp_path, make_wav)
    Path(message.path).unlink()
    assert client.delete(f"/api/v1/voicemail/1001/{message.id}", headers=acme).status_code == 204
    assert store.voicemail("acme", message.id or -1) is None


# -- queue log -----------------------------------------------------------------------------------------------


def test_queue_log_filters_in_time_order(client: TestClient, store: Store, acme: H) -> None:
    def event(name: str, seconds: int, queue: str = "sales", call_id: str = "c1", tenant: str = "acme",
              **kw: Any) -> QueueLogEntry:
        return QueueLogEntry(tenant=tenant, time=T0 + timedelta(seconds=seconds), queue=queue, call_id=call_id,
                             event=name, **kw)

    store.add_queue_events([
        event("entered", 0, position=1, data={"lang": "fa"}),
        event("entered", 2, queue="support", call_id="c2"),
        event("answered", 30, agent="1001", wait=30.0),
        event("completed", 90, agent="1001", wait=30.0, talk=60.0),
        event("entered", 1, tenant="globex"),
    ])
    body = client.get("/api/v1/queue-log", headers=acme).json()
    assert [(e["event"], e["call_id"]) for e in body] == [
        ("entered", "c1"), ("entered", "c2"), ("answered", "c1"), ("completed", "c1")]
    assert body[0]["data"] == {"lang": "fa"} and body[0]["position"] == 1 and body[0]["time"] == "2026-03-20T08:00:00Z"
    assert body[3]["talk"] == 60.0 and body[3]["agent"] == "1001"
    sales = client.get("/api/v1/queue-log?queue=sales", headers=acme).json()
    assert [e["event"] for e in sales] == ["entered", "answered", "completed"]
    c2 = client.get("/api/v1/queue-log", params={"call_id": "c2"}, headers=acme).json()
    assert [e["queue"] for e in c2] == ["support"]
    since = client.get("/api/v1/queue-log", params={"since": "2026-03-20T08:00:30Z"}, headers=acme).json()
    assert [e["event"] for e in since] == ["answered", "completed"]
    assert len(client.get("/api/v1/queue-log?limit=2", headers=acme).json()) == 2
    r = client.get("/api/v1/queue-log?since=notatime", headers=acme)
    assert r.status_code == 422 and "'since'" in r.json()["error"]["message"]


# -- failures ------------------------------------------------------------------------------------------------


def test_unknown_route_is_404_in_the_same_shape(client: TestClient, acme: H) -> None:
    r = client.get("/api/v1/nothing", headers=acme)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_store_failure_is_503_without_details(tmp_path: Path, acme: H) -> None:
    broken = Store(path=tmp_path / "h.db")  # never migrated: every query fails
    try:
        with TestClient(create_api(broken, {"acme-token-3f9a1c": "acme"})) as client:
            r = client.get("/api/v1/calls", headers=acme)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "store_unavailable"
        assert "h.db" not in r.text
    finally:
        broken.close()


def test_openapi_document_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/health", "/api/v1/calls", "/api/v1/calls/{call_id}", "/api/v1/voicemail/{mailbox}",
            "/api/v1/voicemail/{mailbox}/{message_id}/audio", "/api/v1/voicemail/{mailbox}/{message_id}/heard",
            "/api/v1/queue-log"} <= set(paths)


def test_mailbox_names_in_arabic_script(client: TestClient, store: Store, tmp_path: Path,
                                        make_wav: Callable[..., str], acme: H) -> None:
    message = add_message(store, tmp_path, make_wav, mailbox="مبيعات")
    body = client.get("/api/v1/voicemail/مبيعات", headers=acme).json()
    assert [m["id"] for m in body] == [message.id]
    assert body[0]["mailbox"] == "مبيعات"
    assert body[0]["url"] == f"/api/v1/voicemail/%D9%85%D8%A8%D9%8A%D8%B9%D8%A7%D8%AA/{message.id}/audio"
    audio = client.get(body[0]["url"], headers=acme)
    assert audio.status_code == 200 and hashlib.sha256(audio.content).hexdigest() == message.sha256

"""Hatif's HTTP API, version 1: call detail records, voicemail (listened to, marked, deleted) and the queue log.

`create_api(store, tokens, people=...)` builds the FastAPI application. Every route but `/api/v1/health` needs a
principal (`hatif.web.auth`: a bearer token, or a session cookie with its CSRF token) holding the route's scope;
the principal names the tenant, and every route answers from that tenant's records only: an id of another tenant
gets the same 404 as an id that never existed (SECURITY.md). Handlers are thin: they call the store in a worker
thread (it is synchronous) and shape its dataclasses into JSON.

Errors have one shape, `{"error": {"code": ..., "message": ...}}`, with a stable code for programs and a
sentence for people; a bad query parameter is 422 `invalid_request` naming the parameter (FastAPI's own list of
problems is kept under `detail`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hatif.acd.ports import AgentStatesPort
from hatif.errors import PeopleError
from hatif.people.model import Scope
from hatif.people.service import PeopleService
from hatif.store.db import StoreError
from hatif.store.records import RecordStore, VoicemailMessage
from hatif.web.agents import router as agents_router
from hatif.web.auth import TenantWithScope, TokenAuth
from hatif.web.config import ConfigAdmin
from hatif.web.config import router as config_router
from hatif.web.docs import add_docs
from hatif.web.errors import ApiError
from hatif.web.live import EventSource
from hatif.web.live import router as live_router
from hatif.web.people import people_error
from hatif.web.people import router as people_router
from hatif.web.schemas import CallOut, ErrorOut, HeardIn, QueueEventOut, RowId, VoicemailOut

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_CALLS = 1000
MAX_QUEUE_EVENTS = 10000


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
           **more: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, **more}, status_code=status,
                        headers=dict(headers or {}))


# -- dependencies --------------------------------------------------------------------------------------------


def _store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.hatif_store
    return store


StoreDep = Annotated[RecordStore, Depends(_store)]
CallsTenant = Annotated[str, Depends(TenantWithScope(Scope.CALLS_READ))]
VoicemailTenant = Annotated[str, Depends(TenantWithScope(Scope.VOICEMAIL_READ))]
VoicemailWriter = Annotated[str, Depends(TenantWithScope(Scope.VOICEMAIL_WRITE))]
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


def _utc(value: datetime | None) -> datetime | None:
    """A `since` without a zone is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# -- routes --------------------------------------------------------------------------------------------------

router = APIRouter(prefix=PREFIX, tags=["records"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the API answers. Needs no token."""
    return {"status": "ok"}


@router.get("/calls", responses=AUTH_RESPONSES)
async def list_calls(
    tenant: CallsTenant, store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=MAX_CALLS, description="at most this many, newest first")] = 100,
    since: Annotated[datetime | None, Query(description="started at or after (ISO 8601; UTC if no zone)")] = None,
) -> list[CallOut]:
    calls = await run_in_threadpool(store.calls, tenant, limit=limit, since=_utc(since))
    return [CallOut.of(c) for c in calls]


@router.get("/calls/{call_id}", responses=AUTH_RESPONSES)
async def get_call(call_id: str, tenant: CallsTenant, store: StoreDep) -> CallOut:
    call = await run_in_threadpool(store.call, tenant, call_id)
    if call is None:
        raise ApiError(404, "not_found", f"no call {call_id!r}")
    return CallOut.of(call)


async def _message(store: RecordStore, tenant: str, mailbox: str, message_id: int) -> VoicemailMessage:
    message = await run_in_threadpool(store.voicemail, tenant, message_id)
    if message is None or message.mailbox != mailbox:
        raise ApiError(404, "not_found", f"no message {message_id} in mailbox {mailbox!r}")
    return message


def _voicemail_out(request: Request, message: VoicemailMessage) -> VoicemailOut:
    """The audio's URL is a path (with the application's root path), right behind any proxy; the mailbox is
    percent-encoded (RFC 3986) so that any name, in any script, makes a valid URL."""
    path = request.app.url_path_for("voicemail_audio", mailbox=quote(message.mailbox, safe=""),
                                    message_id=str(message.id))
    return VoicemailOut.of(message, f"{request.scope.get('root_path', '')}{path}")


@router.get("/voicemail/{mailbox}", responses=AUTH_RESPONSES)
async def list_voicemail(
    mailbox: str, request: Request, tenant: VoicemailTenant, store: StoreDep,
    new: Annotated[bool, Query(description="only messages not yet heard")] = False,
) -> list[VoicemailOut]:
    messages = await run_in_threadpool(store.voicemails, tenant, mailbox, new_only=new)
    return [_voicemail_out(request, m) for m in messages]


@router.get("/voicemail/{mailbox}/{message_id}", responses=AUTH_RESPONSES)
async def get_voicemail(
    mailbox: str, message_id: RowId, request: Request, tenant: VoicemailTenant, store: StoreDep
) -> VoicemailOut:
    return _voicemail_out(request, await _message(store, tenant, mailbox, message_id))


@router.get(
    "/voicemail/{mailbox}/{message_id}/audio", name="voicemail_audio", response_class=FileResponse,
    responses={**AUTH_RESPONSES, 200: {"content": {"audio/wav": {}}, "description": "the message as WAV"}},
)
async def voicemail_audio(mailbox: str, message_id: RowId, tenant: VoicemailTenant, store: StoreDep) -> FileResponse:
    message = await _message(store, tenant, mailbox, message_id)
    stat = await run_in_threadpool(_stat_file, message.path)
    if stat is None:
        log.warning("voicemail audio missing",
                    extra={"fields": {"tenant": tenant, "message": message_id, "path": message.path}})
        raise ApiError(404, "audio_missing", f"the audio of message {message_id} is no longer there")
    return FileResponse(message.path, media_type="audio/wav", stat_result=stat,
                        filename=f"voicemail-{mailbox}-{message_id}.wav", content_disposition_type="inline")


@router.post("/voicemail/{mailbox}/{message_id}/heard", responses=AUTH_RESPONSES)
async def mark_heard(
    mailbox: str, message_id: RowId, body: HeardIn, request: Request, tenant: VoicemailWriter, store: StoreDep
) -> VoicemailOut:
    message = await _message(store, tenant, mailbox, message_id)
    if not await run_in_threadpool(store.mark_heard, tenant, message_id, body.heard):
        raise ApiError(404, "not_found", f"no message {message_id} in mailbox {mailbox!r}")
    message.heard = body.heard
    log.info("voicemail marked", extra={"fields": {"tenant": tenant, "message": message_id, "heard": body.heard}})
    return _voicemail_out(request, message)


@router.delete("/voicemail/{mailbox}/{message_id}", status_code=204, responses=AUTH_RESPONSES)
async def delete_voicemail(mailbox: str, message_id: RowId, tenant: VoicemailWriter, store: StoreDep) -> Response:
    """Deletes the record, then the file: a failure in between leaves an unlisted file, never a listed message
    whose audio is gone."""
    message = await _message(store, tenant, mailbox, message_id)
    if not await run_in_threadpool(store.delete_voicemail, tenant, message_id):
        raise ApiError(404, "not_found", f"no message {message_id} in mailbox {mailbox!r}")
    try:
        await run_in_threadpool(Path(message.path).unlink, missing_ok=True)
    except OSError as exc:
        log.error("voicemail audio not deleted",
                  extra={"fields": {"tenant": tenant, "message": message_id, "path": message.path, "error": str(exc)}})
    log.info("voicemail deleted", extra={"fields": {"tenant": tenant, "message": message_id, "mailbox": mailbox}})
    return Response(status_code=204)


@router.get("/queue-log", responses=AUTH_RESPONSES)
async def queue_log(
    tenant: CallsTenant, store: StoreDep,
    queue: Annotated[str | None, Query(description="only this queue")] = None,
    call_id: Annotated[str | None, Query(description="only this call")] = None,
    since: Annotated[datetime | None, Query(description="at or after (ISO 8601; UTC if no zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_QUEUE_EVENTS, description="at most this many, in time order")] = 1000,
) -> list[QueueEventOut]:
    entries = await run_in_threadpool(store.queue_events, tenant, queue=queue, call_id=call_id, since=_utc(since),
                                      limit=limit)
    return [QueueEventOut.of(e) for e in entries]


def _stat_file(path: str) -> os.stat_result | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat if os.path.isfile(path) else None


# -- the application -----------------------------------------------------------------------------------------


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ApiError):
        raise exc
    return _error(exc.status, exc.code, exc.message, exc.headers)


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise exc
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else ".".join(loc) or "request"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return _error(422, "invalid_request", "; ".join(problems) or "invalid request",
                  detail=jsonable_encoder(exc.errors()))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
    return _error(exc.status_code, code, str(exc.detail), exc.headers)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("store unavailable", extra={"fields": {"path": request.url.path, "error": str(exc)}})
    return _error(503, "store_unavailable", "the record store is unavailable; try again later",
                  {"Retry-After": "5"})


def create_api(store: RecordStore, tokens: Mapping[str, str], events: EventSource | None = None,
               live_limit: int = 1000, people: PeopleService | None = None,
               agents: Mapping[str, AgentStatesPort] | None = None,
               config: ConfigAdmin | None = None) -> FastAPI:
    """The HTTP API over `store`; `tokens` maps each installation API token to its tenant; `events` feeds the
    WebSocket at /api/v1/events, whose clients are dropped when `live_limit` events wait for them; `people`
    adds signing in, users, their tokens and the audit log (`hatif.web.people`); `agents` are the ACDs (by
    tenant) whose agents /api/v1/agents reads and sets (`hatif.web.agents`); `config` the center's
    configuration objects, changed at run time (`hatif.web.config`)."""
    app = FastAPI(
        title="Hatif", version="1", openapi_url=f"{PREFIX}/openapi.json", docs_url=None, redoc_url=None,
        description="Hatif's HTTP API: call detail records, voicemail, the queue log and agent states, per tenant.",
    )
    app.state.hatif_store = store
    app.state.hatif_auth = TokenAuth(tokens)
    app.state.hatif_events = events
    app.state.hatif_live_limit = live_limit
    app.state.hatif_people = people
    app.state.hatif_agents = agents if agents is not None else {}  # live: a configuration change swaps an ACD
    app.state.hatif_config = config
    app.include_router(router)
    app.include_router(live_router)
    app.include_router(agents_router)
    if people is not None:
        app.include_router(people_router)
        app.add_exception_handler(PeopleError, people_error)
    if config is not None:
        app.include_router(config_router)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StoreError, _store_error)
    add_docs(app, PREFIX)
    return app

"""`serve_api` runs uvicorn inside an already running loop on 127.0.0.1: a real HTTP client fetches the health
route and a voicemail WAV, the process's signal handlers are left alone, and `stop()` closes the port."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from hatif.store import Store, VoicemailMessage
from hatif.web import ApiServer, serve_api

ACME = {"Authorization": "Bearer acme-token-3f9a1c"}


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_serve_api_in_a_running_loop(app: FastAPI, store: Store, tmp_path: Path, make_wav: Callable[..., str],
                                     free_port: Callable[..., int]) -> None:
    wav = tmp_path / "vm" / "1.wav"
    sha = make_wav(wav, seconds=1.0)
    message_id = store.add_voicemail(VoicemailMessage(
        tenant="acme", mailbox="1001", caller="+97155123", caller_name=None, received=datetime.now(UTC),
        seconds=1.0, path=str(wav), sha256=sha))
    port = free_port(udp=False)

    async def scenario() -> None:
        term_before = signal.getsignal(signal.SIGTERM)
        int_before = signal.getsignal(signal.SIGINT)  # asyncio.run's own
        api = await serve_api(app, "127.0.0.1", port)
        try:
            assert api.port == port and api.url == f"http://127.0.0.1:{port}"
            assert signal.getsignal(signal.SIGTERM) == term_before  # uvicorn did not take the signals
            assert signal.getsignal(signal.SIGINT) == int_before
            async with httpx.AsyncClient(base_url=api.url, timeout=5.0) as client:
                health = await client.get("/api/v1/health")
                assert health.status_code == 200 and health.json() == {"status": "ok"}
                listed = (await client.get("/api/v1/voicemail/1001", headers=ACME)).json()
                assert [m["id"] for m in listed] == [message_id]
                audio = await client.get(listed[0]["url"], headers=ACME)
                assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
                assert hashlib.sha256(audio.content).hexdigest() == sha
                assert len(audio.content) == 44 + 16000  # RIFF header + 1 s of 8 kHz 16-bit mono
                partial = await client.get(listed[0]["url"], headers={**ACME, "Range": "bytes=0-11"})
                assert partial.status_code == 206 and partial.content == audio.content[:12]
                assert (await client.get("/api/v1/calls")).status_code == 401
        finally:
            await api.stop()
        assert api.task is None
        assert _refused(port)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def test_port_zero_picks_a_free_port_and_context_manager_stops(app: FastAPI) -> None:
    async def scenario() -> int:
        async with ApiServer(app, "127.0.0.1", 0) as api:
            assert api.port > 0
            async with httpx.AsyncClient(timeout=5.0) as client:
                assert (await client.get(f"{api.url}/api/v1/health")).json() == {"status": "ok"}
            return api.port

    port = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert _refused(port)


def test_port_in_use_is_an_oserror(app: FastAPI) -> None:
    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            api = ApiServer(app, "127.0.0.1", taken.getsockname()[1])
            with pytest.raises(OSError):
                await api.start()
            await api.stop()  # nothing started: a no-op

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def test_stop_while_a_request_is_in_flight(app: FastAPI) -> None:
    """A slow request started before stop() still gets its answer; the server then closes."""
    gate = asyncio.Event()

    @app.get("/api/v1/test-slow")
    async def slow() -> dict[str, str]:
        gate.set()
        await asyncio.sleep(0.3)
        return {"done": "yes"}

    async def scenario() -> None:
        api = await serve_api(app, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=api.url, timeout=5.0) as client:
            request = asyncio.ensure_future(client.get("/api/v1/test-slow"))
            await asyncio.wait_for(gate.wait(), timeout=5)
            await api.stop()
            response = await request
        assert response.status_code == 200 and response.json() == {"done": "yes"}

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))

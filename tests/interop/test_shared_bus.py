"""Two Hatif servers sharing one PostgreSQL database and the real NATS JetStream (the `bus:` setting): SIPp calls
through the first are on the second's bus, in the same order and within 100 ms. Skipped, with the reason, only
when PostgreSQL or NATS does not answer on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from peers import Sipp, free_port

from hatif.events import CallEnded, Event
from hatif_server import RunningHatif

PG = "postgresql://127.0.0.1:5432/test"
NATS = "nats://127.0.0.1:4222"

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
logging:
  level: warning
store:
  url: "{url}"
  journal: "{journal}"
bus:
  url: "{nats}"
  space: "{space}"
tenants:
  - name: default
    domains: [hatif.local]
    endpoints:
      - {{name: uac, host: 127.0.0.1, port: {uac}}}
      - {{name: uas, host: 127.0.0.1, port: {uas}}}
    dialplan:
      - {{match: '^2000$', to: 'endpoint:uas'}}
"""


def _absent() -> str | None:
    try:
        with psycopg.connect(PG, connect_timeout=3):
            pass
    except psycopg.Error as e:
        return f"PostgreSQL at {PG} unreachable: {str(e).strip().splitlines()[0]}"
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=2):
            return None
    except OSError as e:
        return f"no NATS server at {NATS}: {e}"


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A PostgreSQL schema and a broker space of this test alone, both removed afterwards."""
    reason = _absent()
    if reason:
        pytest.skip(reason)
    schema, space = f"hatif_bus_{uuid.uuid4().hex[:10]}", f"t{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://127.0.0.1:5432/test?options=-csearch_path%3D{schema}", space
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        asyncio.run(asyncio.wait_for(_drop_stream(space), 10))


async def _drop_stream(space: str) -> None:
    import nats

    from hatif.broker import stream_name

    nc = await nats.connect(NATS)
    try:
        await nc.jetstream().delete_stream(stream_name(space))
    except Exception:
        pass  # not created: the test stopped before a server started
    finally:
        await nc.close()


def node(url: str, space: str, journal: Path, uac: int, uas: int) -> RunningHatif:
    return RunningHatif(CONFIG.format(port=free_port(tcp=False), url=url, journal=journal, nats=NATS, space=space,
                                      uac=uac, uas=uas))


@pytest.mark.slow
@pytest.mark.alone
def test_calls_through_one_server_reach_the_other_within_100_ms(shared: tuple[str, str], tmp_path: Path) -> None:
    url, space = shared
    uac, uas = free_port(tcp=False), free_port(tcp=False)
    a = node(url, space, tmp_path / "a.journal", uac, uas)
    b = node(url, space, tmp_path / "b.journal", uac, uas)
    arrived: dict[str, dict[int, float]] = {"a": {}, "b": {}}

    def stamp(name: str) -> object:
        return lambda e: arrived[name].__setitem__(e.seq, time.time()) if e.STREAM == "calls" else None

    with a, b:
        a.call(lambda: a.h.services.bus.listen(stamp("a")))  # type: ignore[arg-type]
        b.call(lambda: b.h.services.bus.listen(stamp("b")))  # type: ignore[arg-type]
        target = f"127.0.0.1:{a.config.sip.listen[0].port}"
        with Sipp("uas", local_port=uas):
            with Sipp("uac", target=target, local_port=uac, service="2000", rate=10, max_calls=20,
                      recv_timeout_ms=5000) as caller:
                result = caller.wait(60)
        assert result.ok and result.successful == 20, result.describe()
        a.wait_idle(timeout=15)
        last = a.call(lambda: a.h.services.bus.last("calls"))
        for _ in range(200):  # bounded: 2 s for the last events to cross
            if b.call(lambda: b.h.services.bus.last("calls")) == last:
                break
            time.sleep(0.01)
        seen_a: list[Event] = a.call(lambda: a.h.services.bus.since("calls", 0))
        seen_b: list[Event] = b.call(lambda: b.h.services.bus.since("calls", 0))
    assert last > 0 and seen_a == seen_b
    assert sum(isinstance(e, CallEnded) for e in seen_b) == 20
    delays = [arrived["b"][seq] - arrived["a"][seq] for seq in arrived["a"]]
    assert len(delays) == last and max(delays) < 0.1, sorted(delays)[-5:]


@pytest.mark.slow
@pytest.mark.alone
def test_a_configuration_change_through_one_server_is_in_force_on_the_other(shared: tuple[str, str],
                                                                            tmp_path: Path) -> None:
    """The first imports its file's tenants into the empty store, the second finds them there; a dial-plan rule
    written through the first reaches the second's router through the bus, and a refused one reaches neither."""
    url, space = shared
    uac, uas = free_port(tcp=False), free_port(tcp=False)
    a = node(url, space, tmp_path / "a.journal", uac, uas)
    b = node(url, space, tmp_path / "b.journal", uac, uas)
    rules = [{"match": "^2000$", "to": "endpoint:uas"}, {"match": "^3000$", "to": "endpoint:uac"}]
    with a, b:
        center = a.h.services.center
        assert center is not None
        assert b.call(lambda: b.h.sip.directory.route("default", "3000")) is None
        started = time.monotonic()
        asyncio.run_coroutine_threadsafe(center.put("default", "dialplan", "", rules), a.loop).result(10)
        for _ in range(300):  # bounded: 3 s
            if b.call(lambda: b.h.sip.directory.route("default", "3000")) is not None:
                break
            time.sleep(0.01)
        took = time.monotonic() - started
        target = b.call(lambda: b.h.sip.directory.route("default", "3000"))
        assert target is not None and target.name == "uac", took
        bad = [{"match": "^4000$", "to": "endpoint:nowhere"}]
        refused = asyncio.run_coroutine_threadsafe(center.put("default", "dialplan", "", bad), a.loop)
        with pytest.raises(Exception, match="no endpoint 'nowhere'"):
            refused.result(10)
        assert b.call(lambda: b.h.sip.directory.route("default", "3000")) is not None
    assert took < 1.0, took

"""Nothing acknowledged is lost on a crash (issue 10, point 4).

A real `hatif serve` process on the demo configuration takes 100 SIPp calls through the trunk (recorded, as the
demo records every bridged call) and three through the sales queue (800) answered by virtual agents. It is killed with
SIGKILL while 50 trunk calls are up and right after the other 50 and the queue calls ended. After a restart on
the same store and journal: every call SIPp saw end (its BYE answered 200) has its CDR and queue-log lines,
the 50 live ones have CDRs marked `interrupted`, and every recording is a valid WAV.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import wave
from pathlib import Path

import pytest
import yaml
from peers import Sipp, free_port, uac_auth_scenario
from server_process import HatifProcess

from demo_config import DEMO_PASSWORD, demo_data
from hatif.sim.ua import Answer, UserAgent
from hatif.sip.transaction import Timers
from hatif.store.db import Store

pytestmark = [pytest.mark.interop, pytest.mark.slow]

LONG, SHORT, QUEUED = 50, 50, 3
OUTSIDE = "+966500000001"  # the demo's dial plan sends Saudi mobiles to the `carrier` trunk


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    sip_port, carrier_port = free_port(), free_port(tcp=False)
    data = demo_data(tmp_path, sip_port=sip_port, api_port=free_port(), rtp=(36000, 37998), log_level="info")
    for endpoint in data["tenants"][0]["endpoints"]:
        if endpoint["name"] == "carrier":
            endpoint["port"] = carrier_port  # where this test's SIPp uas plays the carrier
    target = f"127.0.0.1:{sip_port}"
    scenario = tmp_path / "uac_auth.xml"
    scenario.write_text(uac_auth_scenario("1001"))
    queue_scenario = tmp_path / "uac_auth_1003.xml"
    queue_scenario.write_text(uac_auth_scenario("1003"))
    server = HatifProcess(yaml.safe_dump(data, allow_unicode=True), sip_port)
    carrier = Sipp("uas", local_port=carrier_port)

    def place(script: Path, caller: str, number: str, calls: int, rate: float, duration_ms: int) -> Sipp:
        return Sipp(script, target=target, service=number, auth_user=caller, auth_password=DEMO_PASSWORD,
                    rate=rate, max_calls=calls, call_limit=calls, call_duration_ms=duration_ms,
                    recv_timeout_ms=20_000)

    async def queue_calls() -> object:
        agents = [UserAgent(("127.0.0.1", sip_port), user=a, password=DEMO_PASSWORD, local_host="127.0.0.1",
                            timers=Timers(t1=0.5), answer=Answer(after=0.2)) for a in ("2001", "2002", "2004")]
        for ua in agents:
            await ua.open()
            assert (await ua.register(expires=300)).ok
        try:
            with place(queue_scenario, "1003", "800", QUEUED, 1, 1500) as sipp:
                return await asyncio.to_thread(sipp.wait, 60)
        finally:
            for ua in agents:
                await ua.close(timeout=3)

    try:
        server.start()
        with carrier:
            long_calls = place(scenario, "1001", OUTSIDE, LONG, 25, 120_000).start()
            short_calls = place(scenario, "1001", OUTSIDE, SHORT, 25, 1500).start()
            queued = asyncio.run(queue_calls())
            ended = short_calls.wait(60)
            server.signal(signal.SIGKILL)  # right after: 50 calls just ended, 50 are up
            assert server.wait(10) == -signal.SIGKILL
            long_calls.stop(grace=1)
        assert ended.ok and ended.successful == SHORT, ended.describe()
        assert queued.ok and queued.successful == QUEUED, queued.describe()  # type: ignore[attr-defined]
        server.start()  # the same store and journal: the interrupted calls are recorded before it starts
    finally:
        server.stop()
        carrier.close()
        shutil.rmtree(server.workdir, ignore_errors=True)

    store = Store(path=tmp_path / "hatif.db")
    try:
        calls = store.calls("default", limit=1000)
        events = store.queue_events("default", queue="sales")
    finally:
        store.close()
    outside = [c for c in calls if c.called == OUTSIDE]
    answered = [c for c in outside if c.outcome == "answered"]
    interrupted = [c for c in outside if c.outcome == "interrupted"]
    assert len(answered) == SHORT and len(interrupted) == LONG, sorted((c.outcome, c.duration) for c in outside)
    assert all(c.ended is not None and c.ended >= c.started for c in interrupted)
    queue_cdrs = [c for c in calls if c.called == "800"]
    assert len(queue_cdrs) == QUEUED
    for cdr in queue_cdrs:
        kinds = [e.event for e in events if e.call_id == cdr.call_id]
        assert {"entered", "answered", "completed"} <= set(kinds), kinds
    recordings = sorted((tmp_path / "recordings").rglob("*.wav"))
    assert len(recordings) >= LONG + SHORT
    for path in recordings:
        with wave.open(str(path)) as w:  # a valid RIFF/WAVE header whose sizes match the file
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
            assert 44 + w.getnframes() * 4 == path.stat().st_size
    interrupted_recordings = [c.recording for c in interrupted]
    assert all(r is not None and Path(r).exists() for r in interrupted_recordings)

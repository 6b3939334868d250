"""The demo's main menu (700) walked by SIPp callers sending RFC 4733 digits, and by a baresip phone.

The configuration is `examples/demo.yaml` itself, with only what a test must change: loopback addresses and
free ports, folders under tmp_path, the office hours (always open, or always closed for the after-hours
branch), a shorter menu timeout, trusted endpoints for the SIPp callers and the trunk pointed at a SIPp
callee. Every branch is checked from inside Hatif (the IVR nodes each call entered, its variables and
language) and, for voicemail, through the HTTP API.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from ivr_walk import Step, scenario
from peers import Baresip, Sipp, free_port

from hatif.ivr.orders import start_order_service
from hatif_server import RunningHatif

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
TOKEN = "demo-token-change-me"
ALWAYS = {"mon-sun": "00:00-00:00"}


def demo_config(tmp: Path, *, open_hours: bool, callers: dict[str, int], carrier_port: int, orders_port: int,
                menu_timeout: float = 1.5) -> tuple[str, int]:
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    port = free_port(tcp=False)
    api_port = free_port()
    data["sip"] = {"listen": [f"udp:127.0.0.1:{port}"], "timers": {"t1": 0.1, "t2": 0.8, "t4": 1.0, "d": 1.0},
                   "ring_timeout": 5}
    # These SIPp callers send DTMF but no other RTP, and the timeout branch stays silent for 55 s: past the
    # RTP inactivity timeout (30 s), which would rightly end such a call. A phone sends audio all along.
    data["media"].update({"host": "127.0.0.1", "port_min": 32000, "port_max": 33998, "record": False,
                          "recordings": str(tmp / "rec"), "cache": str(tmp / "cache"), "rtp_timeout": 0})
    data["voicemail"] = {"folder": str(tmp / "vm")}
    data["store"] = {"path": str(tmp / "hatif.db")}
    data["api"]["listen"] = f"127.0.0.1:{api_port}"
    data["logging"] = {"level": "warning"}
    tenant = data["tenants"][0]
    tenant["schedules"]["office"] = {"open": ALWAYS if open_hours else {}, "holidays": []}
    tenant["endpoints"] = [{"name": "carrier", "host": "127.0.0.1", "port": carrier_port, "trusted": False}]
    tenant["endpoints"] += [{"name": f"sipp-{name}", "host": "127.0.0.1", "port": p} for name, p in callers.items()]
    # Nobody takes queue calls here: the queues turn callers away at once, and the menu's on_fail
    # branches follow (the ACD has tests of its own).
    for agent in tenant["agents"]:
        agent["login"] = False
    for queue in tenant["queues"]:
        queue["join_when_empty"] = False
    nodes = tenant["flows"]["main"]["nodes"]
    nodes["menu"]["timeout"] = menu_timeout
    nodes["lookup"]["url"] = nodes["lookup"]["url"].replace("127.0.0.1:8700", f"127.0.0.1:{orders_port}")
    return yaml.safe_dump(data, allow_unicode=True), api_port


class Walk:
    """One Hatif running the demo, with the order service beside it."""

    def __init__(self, tmp: Path, open_hours: bool, callers: dict[str, int], carrier_port: int = 0) -> None:
        self.tmp = tmp
        self.orders_port = free_port()
        text, self.api_port = demo_config(tmp, open_hours=open_hours, callers=callers,
                                          carrier_port=carrier_port or free_port(tcp=False),
                                          orders_port=self.orders_port)
        self.hatif = RunningHatif(text)
        self.callers = callers

    def __enter__(self) -> Walk:
        self.hatif.__enter__()
        self.orders = asyncio.run_coroutine_threadsafe(
            start_order_service("127.0.0.1", self.orders_port), self.hatif.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.orders.stop(), self.hatif.loop).result(15)
        self.hatif.__exit__(*exc)

    @property
    def target(self) -> str:
        host, port = self.hatif.address("udp")
        return f"{host}:{port}"

    def sipp(self, name: str, caller: str, steps: list[Step], number: str = "700") -> Sipp:
        number = DIRECT.get(name, number)
        path = scenario(self.tmp / "scenarios", name, caller, steps)
        return Sipp(path, target=self.target, local_port=self.callers[name], service=number, max_calls=1,
                    recv_timeout_ms=90_000)

    def calls(self) -> dict[str, dict[str, Any]]:
        """Per caller number: the IVR nodes entered, digits, language, variables and outcome, from the events."""
        def read() -> dict[str, dict[str, Any]]:
            control = self.hatif.h.control
            by_call: dict[str, dict[str, Any]] = {}
            for e in control.events:
                entry = by_call.setdefault(e.call_id, {"nodes": [], "digits": "", "caller": None})
                if e.kind == "call.started":
                    entry["caller"] = e.data["caller"]
                elif e.kind == "ivr.node":
                    entry["nodes"].append(e.data["node"])
                elif e.kind == "dtmf":
                    entry["digits"] += str(e.data["digit"])
                elif e.kind == "call.ended":
                    entry["outcome"] = e.data["outcome"]
            return {v["caller"]: v for v in by_call.values() if v["caller"] is not None}
        return self.hatif.call(read)

    def records(self) -> dict[str, Any]:
        store = self.hatif.h.services.store
        return {r.caller: r for r in store.calls("default", limit=100)}


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


BRANCHES: dict[str, tuple[str, list[Step]]] = {
    # name: (caller number, steps). Digits are sent early: a menu takes what was typed ahead.
    "order": ("0501110001", [("pause", 800), ("digits", "3"), ("pause", 1500), ("digits", "1001#"),
                             ("pause", 9000), ("bye", "")]),
    "no-order": ("0501110002", [("pause", 800), ("digits", "3"), ("pause", 1500), ("digits", "9999#"),
                                ("pause", 7000), ("bye", "")]),
    "language": ("0501110003", [("pause", 800), ("digits", "0"), ("pause", 1500), ("digits", "1"),
                                ("pause", 4000), ("bye", "")]),
    "invalid": ("0501110004", [("pause", 800), ("digits", "7"), ("pause", 2500), ("digits", "2"),
                               ("pause", 5000), ("bye", "")]),
    "sales": ("0501110005", [("pause", 800), ("digits", "1"), ("pause", 6000), ("bye", "")]),
    "timeout": ("0501110006", [("pause", 55_000), ("bye", "")]),
    "vip": ("1005", [("pause", 6000), ("bye", "")]),
    "direct-voicemail": ("0501110007", [("pause", 3000), ("bye", "")]),
}
DIRECT = {"direct-voicemail": "701"}  # 701 reaches the front desk's voicemail without the menu


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    callers = {name: free_port(tcp=False) for name in BRANCHES}
    with Walk(tmp_path, True, callers) as w:
        yield w


def test_sipp_callers_walk_every_branch_of_the_menu(walk: Walk) -> None:
    with ExitStack() as stack:
        runs = {name: stack.enter_context(walk.sipp(name, caller, steps))
                for name, (caller, steps) in BRANCHES.items()}
        results = {name: run.wait(100) for name, run in runs.items()}
    for name, result in results.items():
        assert result.ok and result.successful == 1, f"{name}: {result.describe()}"
    assert walk.hatif.wait_idle(15) == {"transactions": 0, "calls": 0, "dialogs": 0}
    seen = walk.calls()
    nodes = {name: seen[caller]["nodes"] for name, (caller, _) in BRANCHES.items()}
    digits = {name: seen[caller]["digits"] for name, (caller, _) in BRANCHES.items()}
    opening = ["hours", "vip", "welcome", "menu"]
    assert nodes["order"][:7] == [*opening, "order", "lookup", "menu"], nodes["order"]
    assert digits["order"] == "31001#"
    assert nodes["no-order"][:8] == [*opening, "order", "lookup", "no_order", "menu"], nodes["no-order"]
    assert nodes["language"][:6] == [*opening, "language", "menu"], nodes["language"]
    assert nodes["invalid"][:7] == [*opening, "support", "message"], nodes["invalid"]
    assert digits["invalid"] == "72"  # 7 is not an option: the menu said so and asked again
    assert nodes["sales"][:7] == [*opening, "sales", "sales_message"], nodes["sales"]
    assert nodes["timeout"][:7] == [*opening, "support", "message"], nodes["timeout"]
    assert digits["timeout"] == ""
    assert nodes["vip"][:6] == ["hours", "vip", "priority", "welcome", "menu"][:6], nodes["vip"]
    assert nodes["direct-voicemail"] == []
    records = walk.records()  # the call detail records, in the store
    assert records["0501110007"].outcome == "voicemail" and records["0501110007"].called == "701"
    assert records["0501110001"].variables["order"] == "1001"
    assert records["0501110001"].variables["status"] == "shipped, and arrives tomorrow"
    assert "status" not in records["0501110002"].variables
    assert all(r.outcome in ("ivr", "voicemail") for r in records.values()), {c: r.outcome for c, r in records.items()}


def test_after_hours_calls_reach_the_doctor_on_call_through_the_trunk(tmp_path: Path) -> None:
    carrier = free_port(tcp=False)
    callers = {"night": free_port(tcp=False)}
    with Walk(tmp_path, False, callers, carrier_port=carrier) as w:
        with Sipp("uas", local_port=carrier, max_calls=1, trace_messages=True) as doctor:
            with w.sipp("night", "0509990000", [("pause", 9000), ("bye", "")]) as caller:
                assert caller.wait(40).successful == 1
            assert doctor.wait(10).successful == 1
            invites = [m for m in doctor.message_path.read_text().split("-----") if "INVITE sip:" in m]
        seen = w.calls()["0509990000"]
    assert seen["nodes"][:2] == ["hours", "on_call"]
    assert invites and "INVITE sip:+966500000000@" in invites[0]  # the on-call mobile, through the trunk


def test_baresip_caller_leaves_a_voicemail_found_through_the_api(tmp_path: Path) -> None:
    with Walk(tmp_path, True, {}) as w:
        host, port = w.hatif.address("udp")
        with Baresip("1002", domain=f"{host}:{port}", password="hatif-demo", regint=60, tone_hz=700) as phone:
            assert phone.registered(10)
            phone.dial("700")
            phone.wait_event("CALL_ESTABLISHED", 10)

            def entered(node: str) -> bool:
                return node in w.calls().get("1002", {}).get("nodes", [])
            wait_for(lambda: entered("menu"), 15, "the menu")
            phone.command("sndcode", "9")
            wait_for(lambda: w.hatif.call(lambda: any(e.kind == "record.started"
                                                     for e in w.hatif.h.control.events)), 40, "the beep")
            started = time.monotonic()
            time.sleep(2.5)
            phone.command("sndcode", "#")
            spoken = time.monotonic() - started
            phone.wait_event("CALL_CLOSED", 30)  # "Message saved. Goodbye.", then Hatif hangs up
        assert w.hatif.wait_idle(10)["calls"] == 0
        seen = w.calls()["1002"]
        api = f"http://127.0.0.1:{w.api_port}/api/v1"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        messages = httpx.get(f"{api}/voicemail/general", headers=headers, timeout=5).json()
        assert httpx.get(f"{api}/voicemail/general", timeout=5).status_code == 401
        audio = httpx.get(f"{api}/voicemail/general/{messages[0]['id']}/audio", headers=headers, timeout=5)
    assert "9" in seen["digits"] and "message" in seen["nodes"]
    assert len(messages) == 1
    message = messages[0]
    assert message["caller"] == "1002" and message["heard"] is False
    assert abs(message["seconds"] - spoken) < 0.6, (message["seconds"], spoken)
    path = tmp_path / "message.wav"
    path.write_bytes(audio.content)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 8000, 2)
        assert abs(wav.getnframes() / 8000 - message["seconds"]) < 0.05
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    middle = samples[4000:-4000]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)))) ** 2
    freqs = np.fft.rfftfreq(len(middle), 1 / 8000)
    assert spectrum[np.abs(freqs - 700) < 40].sum() / spectrum.sum() > 0.5  # the phone's 700 Hz tone

"""Wiring: the configuration becomes a running SIP server, its registrar, the media engine and call control.

`start(config)` builds everything on the running loop and returns a `Hatif` handle (tests use it to
start a server on free ports and look inside); `run(config)` is what `hatif serve` calls: it runs until
SIGINT or SIGTERM and drains on SIGTERM (new calls get `503` with `Retry-After`, live calls may finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .calls.apps import register_builtin
from .calls.control import CallControl
from .calls.dialplan import Target
from .calls.guard import CallLimits
from .calls.leg import MediaPolicy
from .config import Config
from .media.engine import MediaEngine, MediaSettings
from .media.prompts import PromptCache
from .services import Services
from .sip import auth as digest
from .sip.admission import AdmissionSettings
from .sip.registrar import RegistrarPolicy
from .sip.server import SipServer, SipSettings
from .sip.transaction import Timers
from .sip.transport import Peer

log = logging.getLogger(__name__)


class ConfigDirectory:
    """The SIP server's view of tenants, users, endpoints and dial plans, read from the configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._tenants = {t.name: t for t in config.tenants}
        self._users = {(t.name, u.username): u for t in config.tenants for u in t.users}
        # Only HA1 hashes are kept (RFC 7616 §3.4.2), never the passwords: one per algorithm the user may use.
        self._ha1: dict[tuple[str, str, str], str] = {}
        self._algorithms: dict[tuple[str, str | None], tuple[str, ...]] = {}
        for t in config.tenants:
            realm = self.realm(t.name)
            self._algorithms[(t.name, None)] = config.digest_algorithms(t, None)
            for u in t.users:
                algorithms = config.digest_algorithms(t, u)
                self._algorithms[(t.name, u.username)] = algorithms
                for algorithm in algorithms:
                    given = (u.ha1 or {}).get(algorithm)  # type: ignore[call-overload]
                    if given is None and u.password is not None:
                        given = digest.ha1(algorithm, u.username, realm, u.password)
                    if given is not None:
                        self._ha1[(t.name, u.username, algorithm)] = given
        self._peers = {(t.name, e.name): Peer(e.transport, e.host, e.port) for t in config.tenants for e in t.endpoints}
        self._endpoints = {(t.name, e.name): e for t in config.tenants for e in t.endpoints}
        self._trusted: dict[tuple[str, int], tuple[str, str]] = {}
        self._trusted_hosts: dict[str, tuple[str, str]] = {}
        for t in config.tenants:
            for e in t.endpoints:
                if e.trusted:
                    self._trusted[(e.host, e.port)] = (t.name, e.name)
                    self._trusted_hosts.setdefault(e.host, (t.name, e.name))

    def reload(self, config: Config) -> None:
        """Serve `config` from now on (a change through the API, `hatif.center`): everything is rebuilt aside
        and swapped in one step of the loop, so a lookup sees the old directory or the new, never a mix."""
        vars(self).update(vars(ConfigDirectory(config)))

    def tenant_for_host(self, host: str) -> str | None:
        tenant = self.config.tenant_for_domain(host.strip("[]"))
        return tenant.name if tenant is not None else None

    def realm(self, tenant: str) -> str:
        t = self._tenants[tenant]
        return t.domains[0] if t.domains else t.name

    def ha1(self, tenant: str, username: str, algorithm: str) -> str | None:
        return self._ha1.get((tenant, username, algorithm))

    def digest_algorithms(self, tenant: str, username: str | None) -> tuple[str, ...]:
        found = self._algorithms.get((tenant, username))
        return found if found is not None else self._algorithms.get((tenant, None), ("MD5",))

    def has_user(self, tenant: str, username: str) -> bool:
        return (tenant, username) in self._users

    def display_name(self, tenant: str, username: str) -> str | None:
        u = self._users.get((tenant, username))
        return u.display_name if u is not None else None

    def language(self, tenant: str, username: str) -> str:
        u = self._users.get((tenant, username))
        return str(u.language) if u is not None else "en"

    def trusted_peer(self, peer: Peer) -> tuple[str, str] | None:
        return self._trusted.get((peer.host, peer.port))

    def route(self, tenant: str, number: str) -> Target | None:
        t = self._tenants.get(tenant)
        if t is None:
            return None
        r = t.route(number)
        if r is None:
            return None
        if r.kind == "user":
            return Target("user", tenant, r.target, r.number)
        if r.kind == "app":
            return Target("app", tenant, r.target, r.number)
        return Target("endpoint", tenant, r.target, r.number, self._peers[(tenant, r.target)])

    def endpoint_peer(self, tenant: str, name: str) -> Peer | None:
        return self._peers.get((tenant, name))

    def media_policy(self, tenant: str, kind: str, name: str) -> MediaPolicy:
        """How a user's phone or an endpoint is treated in media: symmetric RTP, and SRTP in our offers."""
        if kind == "user":
            u = self._users.get((tenant, name))
            return MediaPolicy(u.symmetric_rtp, u.srtp) if u is not None else MediaPolicy()
        e = self._endpoints.get((tenant, name))
        return MediaPolicy(e.symmetric_rtp, e.srtp) if e is not None else MediaPolicy(symmetric_rtp=False)


def host_address() -> str:
    """This machine's address as its name resolves, for SDP and Contact when bound to 0.0.0.0."""
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return address


def _advertise(configured: str | None, bound: str) -> str | None:
    if configured:
        return configured
    return host_address() if bound in ("0.0.0.0", "::") else None


def settings_from(config: Config) -> SipSettings:
    s, sec = config.sip, config.security
    settings = SipSettings(
        user_agent=s.user_agent,
        advertise=_advertise(s.advertise, s.listen[0].host),
        ring_timeout=s.ring_timeout,
        timers=Timers(t1=s.timers.t1, t2=s.timers.t2, t4=s.timers.t4, d=s.timers.d),
        registrar=RegistrarPolicy(min_expires=s.registration.min_expires, max_expires=s.registration.max_expires,
                                  default_expires=s.registration.default_expires,
                                  max_contacts=s.registration.max_contacts_per_user),
        max_message_size=s.limits.max_message_size,
        max_headers=s.limits.max_headers,
        max_transactions=s.limits.max_transactions,
        max_dialogs=s.limits.max_dialogs,
        auth_failure_limit=sec.auth_failure_limit,
        auth_failure_window=sec.auth_failure_window,
        flood_limit=sec.flood_limit,
        flood_window=sec.flood_window,
        ban_time=sec.ban_time,
        user_request_rate=sec.user_request_rate,
        user_request_burst=sec.user_request_burst,
        nonce_lifetime=sec.nonce_lifetime,
        admission=AdmissionSettings(max_queue_delay=s.admission.max_queue_delay, late_for=s.admission.late_for,
                                    max_setups=s.admission.max_setups, retry_after=s.admission.retry_after),
    )
    if sec.secret:
        settings.secret = sec.secret.encode()
    return settings


@dataclass
class Hatif:
    """A running Hatif: the SIP server, the media engine and call control on the current loop."""

    config: Config
    sip: SipServer
    control: CallControl
    media: MediaEngine
    addresses: list[tuple[str, str, int]]
    services: Services

    @property
    def api_port(self) -> int | None:
        return self.services.api.port if self.services.api is not None else None

    def close(self) -> None:
        self.control.close()
        self.sip.close()
        self.media.close()

    async def aclose(self) -> None:
        """Close everything, waiting for the HTTP API and the store (use this from async code)."""
        self.close()
        await self.services.close()


def call_limits_from(config: Config) -> CallLimits:
    return CallLimits(rtp_timeout=config.media.rtp_timeout, session_expires=config.sip.session_expires,
                      min_se=config.sip.min_se,
                      max_call_seconds={t.name: t.max_call_seconds for t in config.tenants
                                        if t.max_call_seconds is not None})


def media_settings_from(config: Config) -> MediaSettings:
    m = config.media
    return MediaSettings(host=m.host, advertise=_advertise(m.advertise, m.host), port_min=m.port_min,
                         port_max=m.port_max, latch_packets=m.latch_packets, latch_silence=m.latch_silence,
                         latch_window=m.latch_window, recordings=Path(m.recordings))


async def start(config: Config) -> Hatif:
    directory = ConfigDirectory(config)
    sip = SipServer(directory, settings_from(config))
    media = MediaEngine(media_settings_from(config))
    media.start()
    prompts = PromptCache(Path(config.media.cache))
    greeting: dict[str, str] = {str(k): v for k, v in config.media.greeting.items()}
    # Synthesize the greetings once, off the loop, so the first caller does not wait for espeak-ng.
    for language, text in config.media.greeting.items():
        await asyncio.to_thread(prompts.speak, text, language)
    control = CallControl(sip, media, prompts, route=directory.route, record=config.media.record,
                          recordings=Path(config.media.recordings), limits=call_limits_from(config))
    register_builtin(control, greeting)
    services = await Services.start(config, control)
    config = services.config  # the tenants as the store has them
    directory.reload(config)
    services.on_config.append(directory.reload)
    control.limits = call_limits_from(config)
    services.on_config.append(lambda changed: setattr(control, "limits", call_limits_from(changed)))
    addresses: list[tuple[str, str, int]] = []
    for listen in config.sip.listen:
        host, port = await sip.listen(listen.transport, listen.host, listen.port)
        addresses.append((listen.transport, host, port))
    return Hatif(config, sip, control, media, addresses, services)


DEMO_ORDERS_PORT = 8700
"""Where `hatif demo` serves the small order-status service its IVR (700, option 3) looks orders up in."""


DEMO_CALLER_PORT = 5099
"""The demo's virtual callers send from 127.0.0.1 on this port (a trusted endpoint in examples/demo.yaml)."""


async def serve(config: Config, demo: bool = False, quiet: bool = False, log_file: Path | None = None) -> None:
    hatif = await start(config)
    settle_heap()
    orders = None
    stream = None
    summary: asyncio.Task[None] | None = None
    summary_stop = asyncio.Event()
    if demo:
        from .ivr.orders import start_order_service

        signs_in = await asyncio.to_thread(_demo_people, hatif)
        if signs_in:
            log.info(f"demo api: {signs_in}")

        orders = await start_order_service("127.0.0.1", DEMO_ORDERS_PORT)
        log.info("demo order service", extra={"fields": {"url": orders.url}})
        if not quiet:
            stream, summary = await _demo_stream(hatif, summary_stop, log_file, signs_in)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    def drain() -> None:
        if hatif.sip.draining:
            # A second SIGTERM: end what is left now (BYE and a CDR for each), then stop.
            ended = hatif.control.end_all("shutdown")
            log.warning("second SIGTERM: calls ended", extra={"fields": {"calls": ended}})
            stop.set()
            return
        log.info("SIGTERM: draining; new calls get 503", extra={"fields": {
            "live_calls": len(hatif.control.calls), "drain_seconds": config.sip.drain_seconds}})
        hatif.sip.draining = True
        task = loop.create_task(_wait_drained(hatif, stop, config.sip.drain_seconds))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    reporter: list[asyncio.TimerHandle] = []
    memory = MemoryReturn()

    def report() -> None:
        log.info("load", extra={"fields": load_figures(hatif)})
        reporter[:] = [loop.call_later(REPORT_EVERY, report)]

    def settle() -> None:
        hatif.sip.shedder.expire(hatif.sip.now())
        memory.check(len(hatif.control.calls) + len(hatif.sip.transactions) + hatif.sip.shedder.remembered)
        reporter.append(loop.call_later(SETTLE_EVERY, settle))

    reporter.append(loop.call_later(REPORT_EVERY, report))
    reporter.append(loop.call_later(SETTLE_EVERY, settle))
    loop.add_signal_handler(signal.SIGTERM, drain)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    log.info("hatif started", extra={"fields": {"version": __version__, "tenants": len(config.tenants)}})
    try:
        await stop.wait()
    finally:
        for handle in reporter:
            handle.cancel()
        summary_stop.set()
        if stream is not None:
            await stream.stop()
        if summary is not None:
            await asyncio.wait([summary], timeout=3)
        if orders is not None:
            await orders.stop()
        await hatif.aclose()
        log.info("hatif stopped")


REPORT_EVERY = 60.0
"""Seconds between two `load` log lines (calls, set-ups, transactions, RTP ports, admission counts)."""


SETTLE_EVERY = 2.0
GC_THRESHOLDS = (5_000, 5, 20)
"""Python's cyclic collector runs after 700 allocations by default; a call allocates thousands of objects
that its reference counts free, so at load the default walks young objects hundreds of times a second. Far
higher thresholds cost no less CPU but pile up a young generation that is walked at once: measured at
100 calls/s (2,000 calls, loop lag by a 5 ms probe), (20000, 20, 20) let a middle generation reach 260,000
objects and stalled the loop 260-290 ms at worst, (5000, 5, 20) at most 80 ms, both at 4.3 ms of CPU a call."""


def settle_heap() -> tuple[int, int, int]:
    """After start-up: what it built (modules, configuration, prompts) lives as long as the process, so it
    leaves the collector's generations, and the collector runs at Hatif's thresholds. A full collection under
    load then walks only the objects calls make: over the start-up heap, measured at 4x capacity, the walks
    cost a good part of the CPU left for calls, and at 100 calls/s in a test process holding thousands of
    tests' objects a full walk stalled the loop 120-300 ms, long enough for admission control to shed calls.
    Returns the thresholds it replaced (a test that runs Hatif in its own process puts them back)."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return before


class MemoryReturn:
    """Gives memory back to the system once a load has passed (issue 20: RSS stayed 4x idle after it).

    Python keeps freed objects in its own arenas and glibc keeps freed heap pages; after thousands of calls,
    transactions and messages were alive at once, little of that returns by itself. Each time what the
    process holds (calls plus transactions) has halved since the peak seen at the last return, one full
    collection and glibc's `malloc_trim` hand the pages back: a few times as a load drains, never at rest."""

    def __init__(self, threshold: int = 200) -> None:
        self.threshold = threshold
        self.peak = 0
        self._trim: Any = None
        if sys.platform == "linux":
            import ctypes
            import ctypes.util

            with contextlib.suppress(OSError, AttributeError):
                self._trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim

    def check(self, held: int) -> bool:
        self.peak = max(self.peak, held)
        if self.peak < self.threshold or held > self.peak // 2:
            return False
        self.peak = held
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        log.info("load passed: memory returned", extra={"fields": {"held": held}})
        return True


def load_figures(hatif: Hatif) -> dict[str, object]:
    """What a process holds right now and what admission control did: the figures of the `load` log line."""
    media = hatif.media.stats()
    return {"calls": len(hatif.control.calls), "setups": hatif.sip.admission.setups,
            "transactions": len(hatif.sip.transactions), "dialogs": hatif.control.dialog_count(),
            "rtp_legs": media["legs"], "ports_in_use": media["ports_in_use"], "ports_free": media["ports_free"],
            **hatif.sip.admission.stats, **{f"ended_{k}": v for k, v in hatif.control.ended_by.items()}}


async def _wait_drained(hatif: Hatif, stop: asyncio.Event, limit: float) -> None:
    """Let live calls finish until `limit` seconds have passed; then end the rest (BYE, and each call's CDR
    goes to the store before the process exits, in `Hatif.aclose`), give the BYEs a moment, and stop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while hatif.control.calls and loop.time() < deadline:
        await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
    if hatif.control.calls:
        ended = hatif.control.end_all("drain_deadline")
        log.info("drain deadline: calls ended", extra={"fields": {"calls": ended}})
        byes = loop.time() + 2.0  # answered BYEs tell the parties; their CDRs are written already
        while hatif.control.pending_byes and loop.time() < byes:
            await asyncio.sleep(0.05)
    stop.set()


async def _demo_stream(hatif: Hatif, stop: asyncio.Event, log_file: Path | None = None,
                       signs_in: str | None = None) -> tuple[Any, asyncio.Task[None] | None]:
    """The demo's gentle traffic: virtual callers into 800/801 answered by the virtual agents (users whose
    display name starts "Virtual agent"), and a board of the queues and agents on standard output (redrawn in
    place on a terminal, with the log in `log_file`; plain blocks otherwise)."""
    from .sim.stream import DemoStream
    from .sim.summary import summary_loop

    tenant = hatif.config.tenants[0]
    acd = hatif.services.acd.get(tenant.name)
    agents = [(u.username, u.password) for u in tenant.users
              if (u.display_name or "").startswith("Virtual agent") and u.password is not None]
    port = next((p for t, _, p in hatif.addresses if t == "udp"), 5060)
    numbers = [r.number for r in (tenant.route("800"), tenant.route("801")) if r is not None]
    if acd is None or not agents or not numbers:
        log.info("demo stream off: no queues or virtual agents in the configuration")
        return None, None
    stream = DemoStream(("127.0.0.1", port), agents=agents, numbers=numbers, calls_per_hour=240.0,
                        mean_handle=25.0, caller_port=DEMO_CALLER_PORT, local_host="127.0.0.1")
    await stream.start()
    log.info("demo stream started: virtual callers dial 800 and 801 (hatif demo --quiet turns it off)",
             extra={"fields": {"agents": ",".join(a for a, _ in agents)}})
    note = _how_to_call(hatif) + (f"\napi: {signs_in}" if signs_in else "") + (
        f"\nlog: {log_file} · Ctrl-C stops" if log_file is not None else "")
    task = asyncio.get_running_loop().create_task(summary_loop(acd.snapshot, sys.stdout, every=2.0, stop=stop,
                                                               note=note))
    return stream, task


DEMO_PEOPLE = (("admin", "administrator"), ("supervisor", "supervisor"))
"""The demo's people besides its agents (one per phone user, named as the phone): password `hatif-demo`."""
DEMO_PASSWORD = "hatif-demo"


def _demo_people(hatif: Hatif) -> str | None:
    """On the demo's first start, people to sign in as: an administrator, a supervisor and an agent for each
    phone user (1001-1005), with the demo's password. Returns the line that says where and as whom, or None
    without an API."""
    people, api = hatif.services.people, hatif.services.api
    if people is None or api is None:
        return None
    tenant = hatif.config.tenants[0]
    phones = [u.username for u in tenant.users if not (u.display_name or "").startswith("Virtual agent")]
    if not people.users(tenant.name):
        for name, role in (*DEMO_PEOPLE, *((p, "agent") for p in phones)):
            people.add_user(tenant.name, name, role, DEMO_PASSWORD)
    users = people.users(tenant.name)
    names = [p.name for p in users if p.role != "agent"] + _ranges([p.name for p in users if p.role == "agent"])
    return f"{api.url}/api/v1/docs · sign in as {', '.join(names)} · password {DEMO_PASSWORD}"


def _ranges(names: list[str]) -> list[str]:
    """`1001, 1002, 1003, 1005` -> `1001-1003, 1005`: numbered names in runs, the rest as they are."""
    numbers = sorted(int(n) for n in names if n.isdigit())
    runs: list[str] = []
    for n in numbers:
        if runs and runs[-1].split("-")[-1] == str(n - 1):
            runs[-1] = f"{runs[-1].split('-')[0]}-{n}"
        else:
            runs.append(str(n))
    return runs + sorted(n for n in names if not n.isdigit())


def _how_to_call(hatif: Hatif) -> str:
    """One line for the board: where a phone registers, and what to dial."""
    port = next((p for t, _, p in hatif.addresses if t == "udp"), 5060)
    host = hatif.sip.local_host("udp")[0]
    return (f"phones: register 1001-1005 (password hatif-demo) at {host}:{port}; dial 700 menu, 800/801 queues, "
            "600 echo")


def run(config: Config, demo: bool = False, quiet: bool = False, log_file: Path | None = None) -> int:
    """Run the server until stopped; uvloop when installed. `demo` also starts the demo's order service and,
    unless `quiet`, virtual callers and agents with a live board (the log then in `log_file`, if given)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(config, demo, quiet, log_file))
    else:
        uvloop.run(serve(config, demo, quiet, log_file))
    return 0

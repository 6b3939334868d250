"""The services around call control: the store, the HTTP API, voicemail, IVR flows and message waiting.

`Services.start` opens the store (SQLite by default, PostgreSQL when configured) and migrates it, writes a CDR
marked `interrupted` for every call the journal of open calls says was up when the last run died, registers the
applications the dial plan can reach (`flow:NAME`, `voicemail:MAILBOX`, `app:check-voicemail`), writes each
call's detail record when it ends, and serves the HTTP API when `api.listen` is set, with the people of the
store signing in to it (`hatif.people`).

Persist before acknowledging (SECURITY.md): call control answers a BYE only once `durable()` is done, that is
once every CDR and queue-log line queued so far is committed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .acd import model as acd_model
from .acd import prompts as acd_prompts
from .acd.service import AcdService
from .acd.states import StateRefused, StateRequest, StateRules, WorkState
from .broker import NatsRelay
from .bus import Bus, Gap, accepting
from .calls.api import CallEvent, Channel, Hangup, Outcome
from .calls.call import Call
from .calls.control import CallControl
from .center import Center
from .config import Config, Tenant, parse_host_port
from .events import AgentStateRequested
from .ivr.model import FlowSet
from .ivr.runner import run_flow
from .outbox import Outbox
from .people import PeopleService, PeopleStore
from .sip.headers import Headers, NameAddr
from .sip.message import Request
from .sip.transport import Peer
from .sip.uri import URI
from .store.batch import BatchWriter
from .store.configrows import ConfigRows
from .store.db import Store, StoreError
from .store.eventlog import EventLog
from .store.journal import CallJournal, OpenCall, repair_wav
from .store.records import CallRecord, LegRecord
from .store.spill import SpillFile
from .translate import call_event, router_events
from .voicemail import CONTENT_TYPE, EVENT, Mailbox, check_messages, leave_message, message_summary
from .web.api import create_api
from .web.server import ApiServer, serve_api

log = logging.getLogger(__name__)

AGENT_REPLAY = 10_000
"""How far back in the `agents` stream (events of every tenant) a starting node looks for agent state requests."""


class MwiNotifier:
    """Message waiting (RFC 3842): an unsolicited NOTIFY to each registered phone of the mailbox's recipients."""

    def __init__(self, control: CallControl) -> None:
        self.control = control

    async def notify(self, tenant: str, mailbox: Mailbox, new: int, old: int) -> None:
        srv = self.control.server
        for user in mailbox.recipients:
            for binding in srv.registry.lookup((tenant, user), srv.now()):
                peer = Peer(binding.source[0], binding.source[1], binding.source[2])
                host = srv.local_host(peer.transport)[0]
                account = f"sip:{mailbox.name}@{host}"
                h = Headers([
                    ("From", str(NameAddr(URI("sip", host, mailbox.name), None, (("tag", secrets.token_hex(6)),)))),
                    ("To", str(NameAddr(URI("sip", host, user)))),
                    ("Call-ID", f"{secrets.token_hex(12)}@hatif"),
                    ("CSeq", "1 NOTIFY"),
                    ("Contact", str(NameAddr(srv.contact_uri(peer.transport, "hatif")))),
                    ("Max-Forwards", "70"),
                    ("Event", EVENT),
                    ("Subscription-State", "active;expires=3600"),
                    ("Content-Type", CONTENT_TYPE),
                ])
                srv.send_request(Request(h, message_summary(new, old, account), "NOTIFY", binding.uri), peer)


def _on_list(tenant: Tenant) -> Callable[[str, str], bool]:
    lists = tenant.lists
    return lambda name, number: name in lists and number in lists[name]


@dataclass
class Services:
    config: Config
    control: CallControl
    store: Store
    api: ApiServer | None = None
    flows: dict[str, FlowSet] = field(default_factory=dict)
    acd: dict[str, AcdService] = field(default_factory=dict)
    cdrs: BatchWriter[CallRecord] | None = None
    mwi: MwiNotifier | None = None
    journal: CallJournal | None = None
    interrupted: list[CallRecord] = field(default_factory=list)  # CDRs written at start for the last run's calls
    bus: Bus = field(default_factory=Bus)
    outbox: Outbox | None = None  # the store's event log in front of `bus`
    relay: NatsRelay | None = None  # the other processes' events, when `bus.url` is set
    center: Center | None = None  # the tenants in the store, changed at run time
    people: PeopleService | None = None  # who signs in to the API
    on_config: list[Callable[[Config], None]] = field(default_factory=list)  # told each new configuration
    retired: list[AcdService] = field(default_factory=list)  # replaced by a change, finishing their calls
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _unfollow: dict[AcdService, Callable[[], None]] = field(default_factory=dict)  # each ACD's bus listener
    _spill: Callable[[list[Any]], object] | None = None
    node: str = field(default_factory=lambda: secrets.token_hex(6))  # this process, as the origin of requests
    _syncer: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, config: Config, control: CallControl) -> Services:
        store = await asyncio.to_thread(Store, config.store.url, path=config.store.path)
        await asyncio.to_thread(store.migrate)
        services = cls(config, control, store)
        spill = SpillFile(config.store.journal_path.with_name("unstored.jsonl"))
        await asyncio.to_thread(services._replay, spill)
        services.journal = CallJournal(config.store.journal_path)
        services.interrupted = await asyncio.to_thread(services._recover, services.journal)
        services.cdrs = BatchWriter(store.add_calls, "call records", linger=config.store.linger, spill=spill.append)
        services.mwi = MwiNotifier(control)
        services._spill = spill.append
        control.on_record.append(services._write_call)
        control.listeners.append(services._on_event)
        services.outbox = Outbox(services.bus, EventLog(store))
        people = services.people = PeopleService(PeopleStore(store.engine), tenants=[t.name for t in config.tenants])
        services.center = Center(config, ConfigRows(store), outbox=services.outbox, apply=services.apply_config,
                                 audit=people.audit)
        config = services.config = await services.center.start()  # the store's tenants from now on
        people.tenants = frozenset(t.name for t in config.tenants)
        services.on_config.append(lambda new: setattr(people, "tenants", frozenset(t.name for t in new.tenants)))
        services.flows = {t.name: FlowSet(t.flows, t.schedules, t.lists, t.timezone) for t in config.tenants}
        await services.outbox.start()
        if config.bus.url is not None:
            relay = NatsRelay(config.bus.url, services.outbox.arrive, on_reconnect=services.outbox.catch_up,
                              space=config.bus.space)
            await relay.start()  # BrokerError names the URL when nothing answers there
            services.outbox.relay = services.relay = relay
            log.info("event bus shared", extra={"fields": {"url": config.bus.url, "stream": relay.stream}})
        control.listeners.append(services._publish_call_event)
        control.durable = services.durable
        services._syncer = asyncio.get_running_loop().create_task(services._sync_journal())
        control.mailbox_for = services._mailbox_of
        control.register_app("flow", services._flow)
        control.register_app("voicemail", services._voicemail)
        control.register_app("check-voicemail", services._check_voicemail)
        control.register_app("queue", services._queue)
        control.register_app("agent", services._agent)
        for t in config.tenants:
            if t.queues:
                services.acd[t.name] = await services._new_acd(t)
        if config.api.listen:
            host, port = parse_host_port(config.api.listen)
            tokens = {t.token: t.tenant for t in config.api.tokens}
            services.api = await serve_api(create_api(store, tokens, events=services.outbox, people=people,
                                                      agents=services.acd, config=services.center), host, port)
            log.info("api listening", extra={"fields": {"url": services.api.url}})
        return services

    async def _new_acd(self, t: Tenant) -> AcdService:
        """A tenant's ACD, its agents in the states the nodes agreed on (`_follow_agent_states`)."""
        assert self.outbox is not None
        rules = StateRules(t.not_ready_reasons, t.require_reason, t.missed_in_a_row)
        acd = AcdService(self.control, t.name, t.queues, t.agents, store=self.store, voicemail=self.leave_voicemail,
                         vip=_on_list(t), linger=self.config.store.linger, spill=self._spill, rules=rules,
                         publish=self.outbox.emit, node=self.node)
        acd.listeners.append(self._router_publisher(acd))
        acd.start()
        self._unfollow[acd] = await self._follow_agent_states(acd)
        return acd

    async def apply_config(self, config: Config) -> None:
        """A changed configuration (`hatif.center`), in force for the next call. A tenant whose queues, agents,
        reasons or lists changed gets a new ACD, its agents in the states the nodes agreed on (replayed as a
        starting node does); then flows, directory, dial plans and ACDs are swapped in one step of the loop, and
        each replaced ACD finishes the callers it holds before it closes."""
        old = self.config
        fresh: dict[str, AcdService | None] = {}
        for t in config.tenants:
            before = old.tenant(t.name)
            if before is None or _acd_settings(before) != _acd_settings(t):
                fresh[t.name] = await self._new_acd(t) if t.queues else None
        self.config = config  # from here to the end, no await: a call sees all of the old or all of the new
        self.flows = {t.name: FlowSet(t.flows, t.schedules, t.lists, t.timezone) for t in config.tenants}
        for hook in self.on_config:
            hook(config)
        for name, acd in fresh.items():
            previous = self.acd.pop(name, None)
            if acd is not None:
                self.acd[name] = acd
            if previous is not None:
                self.retired.append(previous)
                task = asyncio.get_running_loop().create_task(self._retire(previous))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)

    async def _retire(self, acd: AcdService) -> None:
        """Closes a replaced ACD once no caller waits in it and no phone rings for it (at most an hour)."""
        for _ in range(3600):
            if not acd.waiting and not acd.offers:
                break
            await asyncio.sleep(1.0)
        stop = self._unfollow.pop(acd, None)
        if stop is not None:
            stop()
        await acd.close()
        if acd in self.retired:
            self.retired.remove(acd)

    async def close(self) -> None:
        if self.center is not None:
            self.center.close()
        for task in tuple(self._retiring):
            task.cancel()
        for acd in (*self.acd.values(), *self.retired):
            await acd.close()
        if self.cdrs is not None:
            await self.cdrs.close()
        if self.outbox is not None:
            await self.outbox.close()
        if self.relay is not None:
            await self.relay.close()
        if self._syncer is not None:
            self._syncer.cancel()
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
        if self.api is not None:
            await self.api.stop()
        await asyncio.to_thread(self.store.close)

    # -- call records -------------------------------------------------------------------------------------

    def _write_call(self, record: CallRecord) -> None:
        assert self.cdrs is not None
        journal = self.journal
        done = self.cdrs.add(record)
        if journal is not None:
            # Closed in the journal once committed: a crash before that leaves it to the next start.
            done.add_done_callback(lambda f: journal.closed(record.call_id) if not f.exception() else None)

    def _on_event(self, event: CallEvent) -> None:
        journal = self.journal
        if journal is None:
            return
        if event.kind == "call.started":
            call = self.control.calls.get(event.call_id)
            if call is not None:
                started = call.wall(call.started)
                assert started is not None
                journal.opened(call.id, call.tenant, call.caller_number, call.called_number, started)
        elif event.kind == "call.bridged":
            call = self.control.calls.get(event.call_id)
            if call is not None:
                for path, _ in call.recordings:
                    journal.recording(call.id, str(path))

    # -- events --------------------------------------------------------------------------------------------

    def _publish_call_event(self, event: CallEvent) -> None:
        """Call control's report, as the one event model, into the store's log and then the bus."""
        assert self.outbox is not None
        typed = call_event(event, time.time() - self.control.loop.time())
        if typed is not None:
            self.outbox.emit(typed)

    def _router_publisher(self, acd: AcdService) -> Callable[[Any, float], None]:
        def publish(event: Any, wall0: float) -> None:
            assert self.outbox is not None
            wrapup: tuple[str, float | None] | None = None
            queues: tuple[str, ...] = ()
            if isinstance(event, acd_model.AgentStateChanged):
                status = acd.router.agent_status(event.agent)  # wrap-up and queues are the router's, right now
                queues = status.queues if event.old is acd_model.AgentState.LOGGED_OUT else ()
                if event.new is acd_model.AgentState.AFTER_CALL_WORK and status.wrapup_queue is not None:
                    seconds = status.wrapup_until - event.at if status.wrapup_until is not None else None
                    wrapup = (status.wrapup_queue, seconds)
            for typed in router_events(acd.tenant, event, wall0, by=acd.by, wrapup=wrapup, queues=queues):
                self.outbox.emit(typed)
        return publish

    async def _follow_agent_states(self, acd: AcdService) -> Callable[[], None]:
        """A starting node takes up the agent states the running ones agreed on: it replays the tenant's requests
        among the last `AGENT_REPLAY` events of the `agents` stream, then applies each new one from the bus."""
        assert self.outbox is not None
        seq = max(0, self.outbox.last("agents") - AGENT_REPLAY)
        for _ in range(AGENT_REPLAY // 1000 + 100):  # bounded: pages of 1,000, and what arrives meanwhile
            page = await self.outbox.since("agents", seq, limit=1000, tenant=acd.tenant)
            if not page:
                break
            acd.replay(page)
            seq = page[-1].seq
        try:
            acd.replay(self.bus.since("agents", seq))  # delivered since the last read; no await until listening
        except Gap:
            log.warning("agent states replayed only in part", extra={"fields": {"tenant": acd.tenant, "after": seq}})
        return self.bus.listen(acd.on_event, accepting(["agents"], tenant=acd.tenant, types=(AgentStateRequested,)))

    def durable(self) -> asyncio.Future[None]:
        """Done once every CDR and queue-log line queued so far is committed (or spilled): what a BYE's 200
        waits for."""
        acds = (*self.acd.values(), *self.retired)
        writers: list[BatchWriter[Any]] = [w for w in (self.cdrs, *(a.queue_log for a in acds)) if w is not None]
        pending = [f for f in (w.flushed() for w in writers) if not f.done()]
        return asyncio.ensure_future(_settled(pending)) if pending else _done(asyncio.get_running_loop())

    async def _sync_journal(self) -> None:
        """fsync the journal of open calls about once a second (a power cut loses at most that second)."""
        journal = self.journal
        assert journal is not None
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(journal.sync)
            except OSError as e:
                log.error("journal not synced", extra={"fields": {"error": str(e)}})

    def _replay(self, spill: SpillFile) -> None:
        """Store what the last run kept in the spill file because the database refused it, then empty it."""
        calls, queue = spill.read()
        if not calls and not queue:
            return
        fresh = [c for c in calls if self.store.call(c.tenant, c.call_id) is None]
        if fresh:
            self.store.add_calls(fresh)
        if queue:
            self.store.add_queue_events(queue)
        spill.clear()
        log.warning("records the database had refused are now stored", extra={"fields": {
            "calls": len(fresh), "queue_events": len(queue), "file": str(spill.path)}})

    def _recover(self, journal: CallJournal) -> list[CallRecord]:
        """CDRs for the calls the last run left open (it died): outcome `interrupted`, recordings repaired."""
        records: list[CallRecord] = []
        for call in journal.recover():
            if self.store.call(call.tenant, call.call_id) is not None:
                continue  # its CDR was committed just before the end
            records.append(_interrupted(call))
        if records:
            self.store.add_calls(records)
            log.warning("calls interrupted by the last stop recorded", extra={"fields": {
                "calls": len(records), "journal": str(journal.path)}})
        return records

    # -- voicemail ----------------------------------------------------------------------------------------

    def _tenant(self, name: str) -> Tenant:
        tenant = self.config.tenant(name)
        assert tenant is not None
        return tenant

    def _mailbox_of(self, tenant: str, user: str) -> str | None:
        for box in self._tenant(tenant).mailboxes:
            if box.owner == user:
                return box.name
        return None

    async def _voicemail(self, call: Call, name: str) -> None:
        await self.leave_voicemail(call, name)

    async def leave_voicemail(self, channel: Channel, name: str) -> None:
        box = next((b for b in self._tenant(channel.tenant).mailboxes if b.name == name), None)
        if box is None:
            log.warning("no such mailbox", extra={"fields": {"mailbox": name, "tenant": channel.tenant}})
            await channel.hangup()
            return
        if isinstance(channel, Call):
            channel.outcome = "voicemail"
        await leave_message(channel, box, store=self.store, settings=self.config.voicemail,
                            notifier=self.mwi)

    async def _check_voicemail(self, call: Call, name: str) -> None:
        tenant = self._tenant(call.tenant)
        call.outcome = "voicemail_check"
        await check_messages(call, tenant.mailboxes, store=self.store, settings=self.config.voicemail,
                             notifier=self.mwi, zone=ZoneInfo(tenant.timezone),
                             mailbox=name or None)

    # -- IVR ----------------------------------------------------------------------------------------------

    async def _flow(self, call: Call, name: str) -> None:
        call.outcome = "ivr"
        await run_flow(call, self.flows[call.tenant], name, router=self,
                       on_step=lambda flow, node: self.control.emit(call, "ivr.node", flow=flow, node=node))

    async def queue(self, channel: Channel, name: str) -> Outcome:
        """An IVR route to a queue: wait there; when the queue gives up, the flow takes its `on_fail` branch."""
        acd = self.acd.get(channel.tenant)
        if acd is None:
            log.info("no queues in tenant", extra={"fields": {"queue": name, "call": channel.call_id}})
            return "unavailable"
        return await acd.queue(channel, name)

    async def _queue(self, call: Call, name: str) -> None:
        """A number dialed straight into a queue (800): when no one takes the call, its voicemail if any."""
        call.outcome = "queue"
        outcome = await self.queue(call, name)
        if outcome == "answered" or call.ended:
            return
        acd = self.acd.get(call.tenant)
        settings = acd.settings.get(name) if acd is not None else None
        await call.say(acd_prompts.text("unavailable", call.language))
        if settings is not None and settings.mailbox:
            await self.leave_voicemail(call, settings.mailbox)

    async def _agent(self, call: Call, verb: str) -> None:
        """Agent feature codes: `app:agent:login`, `logout`, `ready`, `pause[:REASON]` (not ready), and
        `wrapup[:SECONDS]` (more after-call work)."""
        call.outcome = "agent"
        acd = self.acd.get(call.tenant)
        caller = call.caller
        user = caller.party if caller is not None else ""
        if acd is None or user not in acd.agents:
            await call.say(acd_prompts.text("not_an_agent", call.language))
            return
        action, _, reason = verb.partition(":")
        wanted = {"login": WorkState.LOGGED_IN, "logout": WorkState.LOGGED_OUT, "ready": WorkState.AVAILABLE,
                  "pause": WorkState.NOT_READY}.get(action)
        if wanted is not None:
            # The same path as the API's: an event every node applies (the feature code works on any node).
            key = {"login": "agent_login", "logout": "agent_logout", "ready": "agent_ready",
                   "pause": "agent_pause"}[action]
            try:
                view = await acd.request(StateRequest(user, wanted, user, reason or None))
                ok = True
                reason = view.reason or reason
            except (StateRefused, StoreError) as e:
                log.info("agent feature code refused", extra={"fields": {"agent": user, "why": str(e)}})
                ok = False
        elif action == "wrapup":
            ok, key = acd.extend_wrapup(user, float(reason or 30)), "agent_wrapup"
        else:
            ok, key = False, "agent_refused"
        try:
            await call.say(acd_prompts.text(key if ok else "agent_refused", call.language, reason=reason))
        except Hangup:
            return

    async def voicemail(self, channel: Channel, mailbox: str) -> None:
        await self.leave_voicemail(channel, mailbox)


def _acd_settings(t: Tenant) -> tuple[object, ...]:
    return (t.queues, t.agents, t.not_ready_reasons, t.lists)


def _done(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    done: asyncio.Future[None] = loop.create_future()
    done.set_result(None)
    return done


async def _settled(futures: list[asyncio.Future[None]]) -> None:
    """Wait for every future; a write that failed outright was logged by its writer, and the BYE is answered
    all the same (the call is over whatever the store says)."""
    await asyncio.gather(*futures, return_exceptions=True)


def _interrupted(call: OpenCall) -> CallRecord:
    ended = call.last_seen or call.started
    recording = call.recordings[0] if call.recordings else None
    seconds = 0.0
    for path in call.recordings:
        got = repair_wav(Path(path))
        if got is not None and path == recording:
            seconds = got
    record = CallRecord(
        call_id=call.call_id, tenant=call.tenant, caller=call.caller, called=call.called, started=call.started,
        outcome="interrupted", ended=ended, duration=round((ended - call.started).total_seconds(), 3),
        recording=recording, variables={"interrupted": "the server stopped while the call was up"},
        legs=[LegRecord("", "inbound", call.caller, call.started, None, ended, "interrupted")])
    if recording is not None:
        record.variables["recorded_seconds"] = f"{seconds:.2f}"
    return record

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

from .acd import prompts as acd_prompts
from .acd.model import AgentState
from .acd.service import AcdService
from .broker import NatsRelay
from .bus import Bus
from .calls.api import CallEvent, Channel, Hangup, Outcome
from .calls.call import Call
from .calls.control import CallControl
from .center import Center
from .config import Config, Tenant, parse_host_port
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
from .store.db import Store
from .store.eventlog import EventLog
from .store.journal import CallJournal, OpenCall, repair_wav
from .store.records import CallRecord, LegRecord
from .store.spill import SpillFile
from .translate import call_event, router_events
from .voicemail import CONTENT_TYPE, EVENT, Mailbox, check_messages, leave_message, message_summary
from .web.api import create_api
from .web.server import ApiServer, serve_api

log = logging.getLogger(__name__)


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
    on_config: list[Callable[[Config], None]] = field(default_factory=list)  # told each new configuration
    retired: list[AcdService] = field(default_factory=list)  # replaced by a change, finishing their calls
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _spill: Callable[[list[Any]], object] | None = None
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
        people = PeopleService(PeopleStore(store.engine), tenants=[t.name for t in config.tenants])
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
                services.acd[t.name] = services._new_acd(t)
        if config.api.listen:
            host, port = parse_host_port(config.api.listen)
            tokens = {t.token: t.tenant for t in config.api.tokens}
            services.api = await serve_api(create_api(store, tokens, events=services.outbox, people=people,
                                                      config=services.center), host, port)
            log.info("api listening", extra={"fields": {"url": services.api.url}})
        return services

    def _new_acd(self, t: Tenant) -> AcdService:
        acd = AcdService(self.control, t.name, t.queues, t.agents, store=self.store, voicemail=self.leave_voicemail,
                         vip=_on_list(t), reasons=t.not_ready_reasons, linger=self.config.store.linger,
                         spill=self._spill)
        acd.listeners.append(self._router_publisher(t.name))
        acd.start()
        return acd

    def apply_config(self, config: Config) -> None:
        """A changed configuration (`hatif.center`), in force for the next call: new flows, directory and dial
        plans at once; a tenant whose queues, agents, reasons or lists changed gets a new ACD, the agents keeping
        their logged-in and not-ready states, while the old one finishes the calls it holds."""
        old, self.config = self.config, config
        self.flows = {t.name: FlowSet(t.flows, t.schedules, t.lists, t.timezone) for t in config.tenants}
        for hook in self.on_config:
            hook(config)
        for t in config.tenants:
            before = old.tenant(t.name)
            if before is not None and _acd_settings(before) == _acd_settings(t):
                continue
            previous = self.acd.pop(t.name, None)
            if t.queues:
                self.acd[t.name] = acd = self._new_acd(t)
                if previous is not None:
                    _carry_states(previous, acd)
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

    def _router_publisher(self, tenant: str) -> Callable[[Any, float], None]:
        def publish(event: Any, wall0: float) -> None:
            assert self.outbox is not None
            for typed in router_events(tenant, event, wall0):
                self.outbox.emit(typed)
        return publish

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
        if action == "login":
            ok, key = acd.login(user), "agent_login"
        elif action == "logout":
            ok, key = acd.logout(user), "agent_logout"
        elif action == "ready":
            ok, key = acd.set_ready(user), "agent_ready"
        elif action == "pause":
            reason = reason or (acd.reasons[0] if acd.reasons else "break")
            ok, key = acd.set_not_ready(user, reason), "agent_pause"
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


def _carry_states(old: AcdService, new: AcdService) -> None:
    """Agents of both keep being logged in, and not ready with their reason, in the new ACD."""
    for user, info in old.agent_info.items():
        if user not in new.agents or info.state is AgentState.LOGGED_OUT:
            continue
        if new.agent_info[user].state is AgentState.LOGGED_OUT:
            new.login(user)
        if info.state is AgentState.NOT_READY:
            new.set_not_ready(user, info.reason)


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

"""The services around call control: the store, the HTTP API, voicemail, IVR flows and message waiting.

`Services.start` opens the store (SQLite by default, PostgreSQL when configured) and migrates it, registers
the applications the dial plan can reach (`flow:NAME`, `voicemail:MAILBOX`, `app:check-voicemail`), writes
each call's detail record when it ends, and serves the HTTP API when `api.listen` is set.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from .calls.api import Channel, Outcome
from .calls.call import Call
from .calls.control import CallControl
from .config import Config, Tenant, parse_host_port
from .ivr.model import FlowSet
from .ivr.runner import run_flow
from .sip.headers import Headers, NameAddr
from .sip.message import Request
from .sip.transport import Peer
from .sip.uri import URI
from .store.db import Store
from .store.records import CallRecord
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


@dataclass
class Services:
    config: Config
    control: CallControl
    store: Store
    api: ApiServer | None = None
    flows: dict[str, FlowSet] = field(default_factory=dict)
    _writes: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    async def start(cls, config: Config, control: CallControl) -> Services:
        store = await asyncio.to_thread(Store, config.store.url, path=config.store.path)
        await asyncio.to_thread(store.migrate)
        services = cls(config, control, store)
        services.flows = {t.name: FlowSet(t.flows, t.schedules, t.lists, t.timezone) for t in config.tenants}
        control.on_record.append(services._write_call)
        control.mailbox_for = services._mailbox_of
        control.register_app("flow", services._flow)
        control.register_app("voicemail", services._voicemail)
        control.register_app("check-voicemail", services._check_voicemail)
        if config.api.listen:
            host, port = parse_host_port(config.api.listen)
            tokens = {t.token: t.tenant for t in config.api.tokens}
            services.api = await serve_api(create_api(store, tokens), host, port)
            log.info("api listening", extra={"fields": {"url": services.api.url}})
        return services

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=5)
        if self.api is not None:
            await self.api.stop()
        await asyncio.to_thread(self.store.close)

    # -- call records -------------------------------------------------------------------------------------

    def _write_call(self, record: CallRecord) -> None:
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.store.add_call, record))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call record not stored", exc_info=task.exception())

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
                            notifier=MwiNotifier(self.control))

    async def _check_voicemail(self, call: Call, name: str) -> None:
        tenant = self._tenant(call.tenant)
        call.outcome = "voicemail_check"
        await check_messages(call, tenant.mailboxes, store=self.store, settings=self.config.voicemail,
                             notifier=MwiNotifier(self.control), zone=ZoneInfo(tenant.timezone),
                             mailbox=name or None)

    # -- IVR ----------------------------------------------------------------------------------------------

    async def _flow(self, call: Call, name: str) -> None:
        call.outcome = "ivr"
        await run_flow(call, self.flows[call.tenant], name, router=self,
                       on_step=lambda flow, node: self.control.emit(call, "ivr.node", flow=flow, node=node))

    async def queue(self, channel: Channel, name: str) -> Outcome:
        """Queues come with the ACD; until one is configured the flow takes its `on_fail` branch."""
        log.info("no queue service", extra={"fields": {"queue": name, "call": channel.call_id}})
        return "unavailable"

    async def voicemail(self, channel: Channel, mailbox: str) -> None:
        await self.leave_voicemail(channel, mailbox)

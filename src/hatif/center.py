"""The center's configuration at run time: tenants live as rows in the store, the boot YAML says the rest.

The boot file keeps where to listen, the store, the bus, logging, media and security. Each tenant (users,
endpoints, mailboxes, dial plan, queues, agents, reasons, schedules, lists, IVR flows) is rows of
`config_objects` (`store.configrows`), one per object, each holding what the YAML writes for it. The effective
configuration is the boot sections plus the tenants assembled from the rows, validated by `config.validate_data`:
the same models and cross-checks as the YAML, so a refused change reads exactly as `hatif check-config` reads
the same center written to a file (`tenants[0].flows.main.nodes.x.next: no node 'y'`, without `file:line: `).

On the first start with no tenant in the store, the YAML's tenants are imported (the demo imports
examples/demo.yaml so); from then on the store is the truth and the YAML's `tenants` section is ignored, which
one info line says at start. `hatif config import|export` moves a whole center in and out.

A change (`put`, `delete`): validate the whole center with it -> write the rows and a `ConfigChanged` event in
one transaction -> the event reaches every node through the outbox (and NATS): each reads the rows, validates,
and hands the new `Config` to `apply`, which swaps the runtime pieces at once. A call in progress keeps what it
started with; the next call uses the new ones. Every change is audited (who, what, when, from where).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from .bus import accepting
from .config import Config, ConfigError, Tenant, validate_data
from .errors import HatifError
from .events import ConfigChanged, Event
from .outbox import Outbox
from .people.model import AuditEntry, Principal
from .store.configrows import Change, ConfigObject, ConfigRows
from .store.db import StoreError

log = logging.getLogger(__name__)

Shape = Literal["items", "map", "whole", "settings"]


@dataclass(frozen=True, slots=True)
class Kind:
    """Where a kind of object sits in a tenant: `items` are a list keyed by `key` (users by username), `map` a
    mapping by name (flows), `whole` one ordered list stored as one object (the dial plan), `settings` the
    tenant's own fields (domains, time zone, ...)."""

    field: str
    shape: Shape
    key: str = ""


KINDS: dict[str, Kind] = {
    "settings": Kind("", "settings"),
    "users": Kind("users", "items", "username"),
    "endpoints": Kind("endpoints", "items", "name"),
    "mailboxes": Kind("mailboxes", "items", "name"),
    "dialplan": Kind("dialplan", "whole"),
    "schedules": Kind("schedules", "map"),
    "lists": Kind("lists", "map"),
    "flows": Kind("flows", "map"),
    "queues": Kind("queues", "items", "name"),
    "agents": Kind("agents", "items", "user"),
    "reasons": Kind("not_ready_reasons", "whole"),
}
"""Every kind of configuration object, in the order the tenant is assembled (and exported)."""
SECRETS = ("password", "ha1")
"""User fields never answered by the API; a user written back without them keeps the stored ones."""
BOOT_SECTIONS = tuple(f for f in Config.model_fields if f != "tenants")
_FIELDS = {k.field for k in KINDS.values() if k.field}
_TENANT_AT = re.compile(r"^tenants\[(\d+)\]")


# -- rows <-> tenant data ----------------------------------------------------------------------------------


def dump_tenant(tenant: Tenant) -> dict[str, Any]:
    """A validated tenant as the YAML would write it (defaults left out); validating it gives it back."""
    return tenant.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def split_tenant(data: dict[str, Any]) -> list[Change]:
    """A tenant's data (as in the YAML) as the objects stored for it."""
    changes: list[Change] = []
    for kind_name, kind in KINDS.items():
        if kind.shape == "settings":
            changes.append(Change(kind_name, "", {k: v for k, v in data.items() if k not in _FIELDS and k != "name"}))
        elif kind.field not in data:
            continue
        elif kind.shape == "whole":
            changes.append(Change(kind_name, "", list(data[kind.field])))
        elif kind.shape == "map":
            changes += [Change(kind_name, str(name), body) for name, body in dict(data[kind.field]).items()]
        else:
            for item in data[kind.field]:
                changes.append(Change(kind_name, str(item.get(kind.key, "")) if isinstance(item, dict) else "",
                                      item))
    return changes


def assemble(name: str, objects: Sequence[ConfigObject]) -> dict[str, Any]:
    """A tenant's data (as the YAML writes it) from its stored objects."""
    data: dict[str, Any] = {"name": name}
    by_kind: dict[str, list[ConfigObject]] = {}
    for o in objects:
        by_kind.setdefault(o.kind, []).append(o)
    for kind_name, kind in KINDS.items():
        found = by_kind.get(kind_name, [])
        if not found:
            continue
        if kind.shape == "settings":
            data.update(found[0].body)
        elif kind.shape == "whole":
            data[kind.field] = copy.deepcopy(found[0].body)
        elif kind.shape == "map":
            data[kind.field] = {o.name: copy.deepcopy(o.body) for o in found}
        else:
            data[kind.field] = [copy.deepcopy(o.body) for o in found]
    return data


def tenants_of(objects: Sequence[ConfigObject]) -> dict[str, dict[str, Any]]:
    """Every stored tenant's data, in the order the tenants were first written."""
    grouped: dict[str, list[ConfigObject]] = {}
    for o in objects:
        grouped.setdefault(o.tenant, []).append(o)
    return {name: assemble(name, found) for name, found in grouped.items()}


def effective(boot: Config, tenants: dict[str, dict[str, Any]]) -> Config:
    """The boot file's sections with these tenants, validated as the YAML is; `ConfigError` otherwise."""
    data: dict[str, Any] = {section: getattr(boot, section) for section in BOOT_SECTIONS}
    data["tenants"] = list(tenants.values())
    return validate_data(data)


def location(message: str) -> str:
    """A check-config message's place within its tenant (`flows.main.nodes.x.next`), or the whole place."""
    path = message.partition(": ")[0]
    return _TENANT_AT.sub("", path).lstrip(".") or path


def public(o: ConfigObject) -> ConfigObject:
    """What the API answers for a stored object: a user's password and HA1 hashes never leave the store."""
    if o.kind == "users" and isinstance(o.body, dict):
        return dataclasses.replace(o, body={k: v for k, v in o.body.items() if k not in SECRETS})
    return o


# -- the runtime service -----------------------------------------------------------------------------------


class UnknownKind(HatifError, LookupError):
    """No such kind of configuration object, or not written that way."""


Apply = Callable[[Config], Awaitable[None] | None]


class Center:
    """The running center's configuration: its rows, their validation, changes through the API, and the
    rebuild on every node when a `ConfigChanged` event arrives."""

    kinds = tuple(KINDS)

    def __init__(self, boot: Config, rows: ConfigRows, *, outbox: Outbox | None = None,
                 apply: Apply | None = None, audit: Callable[[AuditEntry], object] | None = None) -> None:
        self.boot = boot
        self.rows = rows
        self.outbox = outbox
        self.apply = apply
        self.audit = audit
        self.config = boot
        self._write = asyncio.Lock()
        self._reloading: asyncio.Task[None] | None = None
        self._again = False
        self._heard = 0  # the last config event delivered here
        self._applied = 0  # the last config event whose rows were read (and applied, when valid) since
        self._progress = asyncio.Event()
        self._stop: Callable[[], None] | None = None

    async def start(self) -> Config:
        """Imports the YAML's tenants into an empty store, or else loads the store's; follows changes."""
        objects = await asyncio.to_thread(self.rows.objects)
        if not objects:
            changes = {t.name: split_tenant(dump_tenant(t)) for t in self.boot.tenants}
            events = [ConfigChanged(tenant=t, at=time.time(), kind="tenant", name=t, change="created", by="import")
                      for t in changes]
            try:
                await asyncio.to_thread(self.rows.seed, changes, events, "import")
            except StoreError:  # another process sharing the store imported at the same moment: theirs stands
                if not await asyncio.to_thread(self.rows.objects):
                    raise
            else:
                log.info("tenants imported into the store from the configuration file",
                         extra={"fields": {"tenants": ",".join(changes)}})
            objects = await asyncio.to_thread(self.rows.objects)
        else:
            log.info("tenants come from the store; the configuration file's tenants section is ignored",
                     extra={"fields": {"tenants": ",".join(dict.fromkeys(o.tenant for o in objects))}})
        self.config = effective(self.boot, tenants_of(objects))
        differ = sorted({t.name for t in self.boot.tenants} ^ {t.name for t in self.config.tenants}
                        | {t.name for t in self.boot.tenants if self.config.tenant(t.name) not in (None, t)})
        if differ:
            # Someone edited the file's tenants and restarted, expecting the change: say plainly it is not.
            log.warning("the configuration file's tenants differ from the store's, which are in force: "
                        "`hatif config import FILE` applies the file", extra={"fields": {"tenants": ",".join(differ)}})
        if self.outbox is not None:
            self._stop = self.outbox.bus.listen(self._changed, accepting(streams=["config"]))
        return self.config

    def close(self) -> None:
        if self._stop is not None:
            self._stop()
        if self._reloading is not None:
            self._reloading.cancel()

    # -- following changes -----------------------------------------------------------------------------------

    def _changed(self, event: Event) -> None:
        self._heard = max(self._heard, event.seq)
        if self._reloading is not None:
            self._again = True  # one more read once the current one is done: it may predate this event
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            while True:
                self._again = False
                heard = self._heard
                try:
                    config = effective(self.boot, tenants_of(await asyncio.to_thread(self.rows.objects)))
                except ConfigError as e:  # another version wrote what this one refuses: keep what runs
                    log.error("stored configuration refused; the running one is kept",
                              extra={"fields": {"problems": "; ".join(e.messages)}})
                    config = None
                except StoreError as e:  # the next change, or a restart, reads it again
                    log.error("stored configuration unreadable; the running one is kept",
                              extra={"fields": {"error": str(e)}})
                    config = None
                if config is not None:
                    self.config = config
                    if self.apply is not None:
                        done = self.apply(config)
                        if done is not None:
                            await done
                    log.info("configuration applied", extra={"fields": {"tenants": len(config.tenants)}})
                self._applied = max(self._applied, heard)
                self._progress.set()
                self._progress = asyncio.Event()
                if not self._again:
                    return
        finally:
            self._reloading = None

    async def settled(self, seq: int, timeout: float = 10.0) -> bool:
        """Waits (at most `timeout` seconds) until the config event `seq` is in force here: delivered (after any
        events of other processes numbered before it) and the rows read since. False when that took too long."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._applied < seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                return False
        return True

    # -- reading -----------------------------------------------------------------------------------------------

    def kind(self, name: str) -> Kind:
        found = KINDS.get(name)
        if found is None:
            raise UnknownKind(f"configuration kind {name!r}")
        return found

    async def objects(self, tenant: str, kind: str) -> list[ConfigObject]:
        self.kind(kind)
        found = await asyncio.to_thread(self.rows.objects, tenant)
        return [public(o) for o in found if o.kind == kind]

    async def get(self, tenant: str, kind: str, name: str) -> ConfigObject | None:
        self.kind(kind)
        found = await asyncio.to_thread(self.rows.get, tenant, kind, name)
        return public(found) if found is not None else None

    # -- changing -------------------------------------------------------------------------------------------

    async def put(self, tenant: str, kind: str, name: str, body: Any, *, by: Principal | None = None,
                  address: str = "local") -> tuple[ConfigObject, bool]:
        """Creates or replaces one object (the whole list for the dial plan and the reasons); returns it and
        whether it was created. `ConfigError` when the center would not validate with it: nothing changes."""
        shape = self.kind(kind).shape
        if shape in ("whole", "settings") and name:
            raise UnknownKind(f"{kind} object {name!r}: the {kind} is one object, written at /config/{kind}")
        if shape in ("items", "map") and not name:
            raise UnknownKind(f"{kind} without a name: write /config/{kind}/NAME")
        async with self._write:
            old = await asyncio.to_thread(self.rows.get, tenant, kind, name)
            body = self._body(kind, name, body, old)
            await self._change(tenant, kind, name, body, by, address, "changed" if old else "created")
            stored = await asyncio.to_thread(self.rows.get, tenant, kind, name)
        assert stored is not None
        return public(stored), old is None

    async def delete(self, tenant: str, kind: str, name: str, *, by: Principal | None = None,
                     address: str = "local") -> bool:
        """Deletes one object; False when there is none. `ConfigError` when something still refers to it."""
        self.kind(kind)
        async with self._write:
            if await asyncio.to_thread(self.rows.get, tenant, kind, name) is None:
                return False
            await self._change(tenant, kind, name, None, by, address, "deleted")
        return True

    def _body(self, kind: str, name: str, body: Any, old: ConfigObject | None) -> Any:
        spec = KINDS[kind]
        if spec.shape == "whole":
            if not isinstance(body, list):
                raise ConfigError([f"{spec.field}: expected a list"])
            return body
        if not isinstance(body, dict):
            raise ConfigError([f"{spec.field or kind}: expected a mapping"])
        if spec.shape == "items":
            given = body.get(spec.key)
            if given is not None and str(given) != name:
                raise ConfigError([f"{spec.field}.{spec.key}: {given!r} differs from the name in the path ({name!r})"])
            body = {spec.key: name, **body}
        if kind == "users" and old is not None and not any(k in body for k in SECRETS):
            body = {**body, **{k: v for k, v in old.body.items() if k in SECRETS}}
        return body

    async def _change(self, tenant: str, kind: str, name: str, body: Any | None, by: Principal | None,
                      address: str, change: str) -> None:
        objects = await asyncio.to_thread(self.rows.objects)
        names = list(dict.fromkeys(o.tenant for o in objects))
        if tenant not in names:
            if kind != "settings" or body is None:  # a tenant is created by writing its settings
                raise UnknownKind(f"tenant {tenant!r}")
            names.append(tenant)
        kept = [o for o in objects if (o.tenant, o.kind, o.name) != (tenant, kind, name)]
        if body is not None:
            kept.append(ConfigObject(tenant, kind, name, body))
        tenants = tenants_of(kept)
        tenants = {t: tenants.get(t, {"name": t}) for t in names}
        await asyncio.to_thread(effective, self.boot, tenants)  # ConfigError: refused, nothing written
        actor = by.label if by is not None else "command line"
        event = ConfigChanged(tenant=tenant, at=time.time(), kind=kind, name=name, change=change, by=actor)
        numbered = await asyncio.to_thread(self.rows.write, tenant, [Change(kind, name, body)], [event], actor)
        if self.audit is not None:
            entry = AuditEntry(tenant=tenant, at=datetime.now(UTC),
                               actor_id=by.user.id if by is not None and by.user is not None else None,
                               actor=actor, action=f"config.{change}", target=f"{kind} {name}".strip(),
                               address=address, detail={"kind": kind, "name": name})
            await asyncio.to_thread(self.audit, entry)
        if self.outbox is not None:
            self.outbox.committed(numbered)
            if not await self.settled(numbered[-1].seq):
                log.warning("configuration change written but not yet in force here",
                            extra={"fields": {"kind": kind, "name": name, "seq": numbered[-1].seq}})
        else:
            await self._reload()


# -- import and export (the command line) -------------------------------------------------------------------


def export_center(rows: ConfigRows, tenant: str | None = None) -> dict[str, Any]:
    """The store's tenants (or one) as the `tenants` section of a configuration file."""
    tenants = tenants_of(rows.objects(tenant))
    if tenant is not None and tenant not in tenants:
        raise ConfigError([f"no tenant {tenant!r} in the store"])
    return {"tenants": list(tenants.values())}


def import_center(boot: Config, rows: ConfigRows, center: Config, by: str = "command line") -> list[str]:
    """Puts `center`'s tenants in the store, replacing those of the same name, all or nothing, after the whole
    result validated with the boot file (`ConfigError` otherwise). Returns the tenants written."""
    stored = tenants_of(rows.objects())
    given = {t.name: dump_tenant(t) for t in center.tenants}
    effective(boot, {**stored, **given})
    at = time.time()
    events: list[Event] = [ConfigChanged(tenant=name, at=at, kind="tenant", name=name,
                                         change="changed" if name in stored else "created", by=by)
                           for name in given]
    rows.replace({name: split_tenant(data) for name, data in given.items()}, events, by)
    return list(given)

"""The center's configuration as rows (`hatif.store.configrows`, `hatif.center`), on SQLite and PostgreSQL:
tenants assembled from rows and validated as the YAML is, a refused change reading as check-config reads the
same center, the first start's import, and `hatif config import|export`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hatif.bus import Bus
from hatif.center import Center, dump_tenant, export_center, import_center, split_tenant, tenants_of
from hatif.config import ConfigError, load_config, parse_config
from hatif.events import ConfigChanged
from hatif.outbox import Outbox
from hatif.store import Store
from hatif.store.configrows import Change, ConfigRows
from hatif.store.db import StoreError
from hatif.store.eventlog import EventLog

DEMO = Path(__file__).parent.parent.parent / "examples" / "demo.yaml"

BOOT = """
sip:
  listen: ["udp:127.0.0.1:0"]
tenants:
  - name: acme
    domains: [acme.test]
    users:
      - {username: "1001", password: secret-1001}
      - {username: "1002", password: secret-1002}
    endpoints:
      - {name: carrier, host: 127.0.0.1, port: 5070}
    dialplan:
      - {match: '^(1\\d{3})$', to: extension}
    queues:
      - {name: sales}
    agents:
      - {user: "1001", queues: [sales]}
    flows:
      main:
        start: hello
        nodes:
          hello: {type: say, text: "Hello", next: bye}
          bye: {type: route, to: hangup}
  - name: globex
    users:
      - {username: "2001", password: secret-2001}
"""

BAD_FLOW: dict[str, Any] = {"start": "hello", "nodes": {"hello": {"type": "say", "text": "Hi", "next": "menu"}}}


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _check_config(center: dict[str, Any], tmp_path: Path) -> list[str]:
    """What `hatif check-config` says of `center` written to a file, without `file:line: `."""
    path = tmp_path / "center.yaml"
    path.write_text(yaml.safe_dump(center, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    return [m.split(": ", 1)[1] for m in refused.value.messages]


def test_a_tenant_assembled_from_its_rows_is_the_tenant_of_the_file(store: Store) -> None:
    boot = parse_config(BOOT)
    center = Center(boot, ConfigRows(store))
    config = _run(center.start())
    assert config.tenants == boot.tenants
    kinds = {(o.tenant, o.kind, o.name) for o in ConfigRows(store).objects()}
    assert ("acme", "queues", "sales") in kinds and ("acme", "flows", "main") in kinds
    assert ("acme", "dialplan", "") in kinds and ("globex", "settings", "") in kinds


def test_the_demo_round_trips_through_rows(store: Store) -> None:
    demo = load_config(DEMO)
    center = Center(demo, ConfigRows(store))
    assert _run(center.start()).tenants == demo.tenants
    assert tenants_of(ConfigRows(store).objects())["default"] == dump_tenant(demo.tenants[0])


def test_the_second_start_takes_the_store_and_ignores_the_file(store: Store,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    boot = parse_config(BOOT)
    _run(Center(boot, ConfigRows(store)).start())
    with caplog.at_level(logging.WARNING, logger="hatif.center"):
        _run(Center(boot, ConfigRows(store)).start())  # the same file again: nothing to say
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    other = parse_config(BOOT.replace("sales", "support"))
    with caplog.at_level(logging.WARNING, logger="hatif.center"):
        config = _run(Center(other, ConfigRows(store)).start())
    assert [q.name for q in config.tenant("acme").queues] == ["sales"]  # type: ignore[union-attr]
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "differ from the store's" in warning.getMessage() and "hatif config import" in warning.getMessage()


def test_an_invalid_flow_is_refused_with_check_configs_message_and_changes_nothing(store: Store,
                                                                                  tmp_path: Path) -> None:
    boot = parse_config(BOOT)
    rows = ConfigRows(store)
    center = Center(boot, rows)
    _run(center.start())
    before = rows.objects()
    with pytest.raises(ConfigError) as refused:
        _run(center.put("acme", "flows", "main", BAD_FLOW))
    assert rows.objects() == before
    written = export_center(rows)
    written["tenants"][0]["flows"]["main"] = BAD_FLOW
    assert refused.value.messages == _check_config(written, tmp_path)
    assert refused.value.messages[0] == "tenants[0].flows.main.nodes.hello.next: 'menu' is not a node of flow main"


def test_a_change_that_breaks_a_reference_is_refused_as_check_config_refuses_it(store: Store,
                                                                               tmp_path: Path) -> None:
    boot = parse_config(BOOT)
    rows = ConfigRows(store)
    center = Center(boot, rows)
    _run(center.start())
    with pytest.raises(ConfigError) as refused:
        _run(center.delete("acme", "queues", "sales"))
    written = export_center(rows)
    written["tenants"][0]["queues"] = []
    assert refused.value.messages == _check_config(written, tmp_path)
    assert refused.value.messages == ["tenants[0].agents[0].queues[0]: no queue 'sales' in tenant 'acme'"]


def test_a_valid_change_is_written_with_its_event_and_applied(store: Store) -> None:
    boot = parse_config(BOOT)
    rows = ConfigRows(store)
    applied: list[Any] = []

    async def scenario() -> list[Any]:
        bus = Bus()
        outbox = Outbox(bus, EventLog(store))
        center = Center(boot, rows, outbox=outbox, apply=applied.append)
        await center.start()
        await outbox.start()
        seen: list[Any] = []
        bus.listen(seen.append)
        stored, created = await center.put("acme", "queues", "support", {"strategy": "round_robin"})
        assert created and stored.body == {"name": "support", "strategy": "round_robin"} and stored.version == 1
        stored, created = await center.put("acme", "queues", "support", {"strategy": "longest_idle"})
        assert not created and stored.version == 2
        await center.put("acme", "dialplan", "", [{"match": "^800$", "to": "queue:support"},
                                                    {"match": "^(1\\d{3})$", "to": "extension"}])
        center.close()
        await outbox.close()
        return seen

    seen = _run(scenario())
    assert [(e.kind, e.name, e.change) for e in seen if isinstance(e, ConfigChanged)] == [
        ("queues", "support", "created"), ("queues", "support", "changed"), ("dialplan", "", "changed")]
    latest = applied[-1].tenant("acme")
    assert [q.name for q in latest.queues] == ["sales", "support"]
    route = latest.route("800")
    assert route is not None and route.target == "queue:support"
    assert EventLog(store).count("config") >= 3


def test_users_answered_without_secrets_keep_them_when_written_back(store: Store) -> None:
    boot = parse_config(BOOT)
    rows = ConfigRows(store)
    center = Center(boot, rows)
    _run(center.start())
    shown = _run(center.get("acme", "users", "1002"))
    assert shown is not None and "password" not in shown.body
    _run(center.put("acme", "users", "1002", {**shown.body, "display_name": "Reception"}))
    stored = rows.get("acme", "users", "1002")
    assert stored is not None and stored.body["password"] == "secret-1002"
    assert stored.body["display_name"] == "Reception"


def test_the_name_in_the_path_is_the_objects_name(store: Store) -> None:
    center = Center(parse_config(BOOT), ConfigRows(store))
    _run(center.start())
    with pytest.raises(ConfigError, match="differs from the name in the path"):
        _run(center.put("acme", "queues", "sales", {"name": "other"}))


def test_export_and_import_round_trip(open_store: Callable[[], Store]) -> None:
    boot = parse_config(BOOT)
    first, second = open_store(), ConfigRows(open_store())
    _run(Center(boot, ConfigRows(first)).start())
    exported = export_center(ConfigRows(first))
    text = yaml.safe_dump(exported, allow_unicode=True, sort_keys=False)
    center = parse_config(text, "center.yaml")
    assert import_center(boot, second, center) == ["acme", "globex"]
    assert tenants_of(second.objects()) == tenants_of(ConfigRows(first).objects())
    assert export_center(second, "globex") == {"tenants": [exported["tenants"][1]]}


def test_an_import_is_all_or_nothing(store: Store) -> None:
    boot = parse_config(BOOT)
    rows = ConfigRows(store)
    _run(Center(boot, rows).start())
    before = rows.objects()
    clash = parse_config("tenants:\n  - name: initech\n    domains: [acme.test]\n")
    with pytest.raises(ConfigError) as refused:
        import_center(boot, rows, clash)
    assert refused.value.messages == ["tenants[2].domains[0]: domain 'acme.test' already belongs to tenant 'acme'"]
    assert rows.objects() == before


def test_split_and_assemble_keep_every_section() -> None:
    tenant = parse_config(BOOT).tenants[0]
    data = dump_tenant(tenant)
    from hatif.center import assemble
    from hatif.store.configrows import ConfigObject

    objects = [ConfigObject("acme", c.kind, c.name, c.body) for c in split_tenant(data)]
    assert assemble("acme", objects) == data


def test_a_second_seed_is_refused_so_two_first_starts_keep_one_import(store: Store) -> None:
    rows = ConfigRows(store)
    changes = {"acme": split_tenant(dump_tenant(parse_config(BOOT).tenants[0]))}
    rows.seed(changes, [], "import")
    with pytest.raises(StoreError):
        rows.seed({"other": [Change("settings", "", {})]}, [], "import")
    assert {o.tenant for o in rows.objects()} == {"acme"}


def test_a_change_answers_once_in_force_even_behind_another_processs_events(store: Store) -> None:
    """Another process's config event, numbered before ours, has not arrived here: ours waits in the outbox for
    it (read from the log), and the change is answered only once both are applied."""
    boot = parse_config(BOOT)
    rows = ConfigRows(store)
    applied: list[Any] = []

    async def scenario() -> float:
        bus = Bus()
        outbox = Outbox(bus, EventLog(store), fill_after=0.05)
        center = Center(boot, rows, outbox=outbox, apply=applied.append)
        await center.start()
        await outbox.start()
        rows.write("globex", [Change("queues", "elsewhere", {"name": "elsewhere"})],
                   [ConfigChanged(tenant="globex", at=0.0, kind="queues", name="elsewhere")], "other node")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await center.put("acme", "queues", "support", {})
        took = loop.time() - started
        center.close()
        await outbox.close()
        return took

    took = _run(scenario())
    assert took < 5.0
    latest = applied[-1]
    assert [q.name for q in latest.tenant("acme").queues] == ["sales", "support"]
    assert [q.name for q in latest.tenant("globex").queues] == ["elsewhere"]

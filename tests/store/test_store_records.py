"""Round trips of every record type through `Store`, on SQLite and PostgreSQL: legs, variables and data, aware
UTC times, tenant isolation, ordering, filters, and data that survives closing and reopening the store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hatif.store import CallRecord, LegRecord, QueueLogEntry, Store, StoreError, VoicemailMessage

T0 = datetime(2026, 3, 20, 8, 0, 0, 123456, tzinfo=UTC)
TEHRAN = timezone(timedelta(hours=3, minutes=30))


def a_call(call_id: str = "call-1", tenant: str = "acme", started: datetime = T0) -> CallRecord:
    return CallRecord(
        call_id=call_id, tenant=tenant, caller="+982188776655", called="100", started=started,
        outcome="answered", answered=started + timedelta(seconds=4), ended=started + timedelta(seconds=64),
        duration=64.0, talk_seconds=55.5, recording="var/recordings/acme/call-1.wav", recording_sha256="ab" * 32,
        variables={"lang": "fa", "نام": "مریم", "ivr.choice": "2"},
        legs=[
            LegRecord("leg-a", "inbound", "+982188776655", started, started + timedelta(seconds=1),
                      started + timedelta(seconds=64), "normal"),
            LegRecord("leg-b", "outbound", "1001", started + timedelta(seconds=2), None,
                      started + timedelta(seconds=3), "no_answer"),
            LegRecord("leg-c", "outbound", "1002", started + timedelta(seconds=3), started + timedelta(seconds=4),
                      started + timedelta(seconds=64), "normal"),
        ],
    )


def a_message(mailbox: str = "1001", tenant: str = "acme", received: datetime = T0, heard: bool = False,
              caller_name: str | None = "علی رضایی") -> VoicemailMessage:
    return VoicemailMessage(
        tenant=tenant, mailbox=mailbox, caller="+97155123", caller_name=caller_name, received=received,
        seconds=12.48, path=f"var/voicemail/{tenant}/{mailbox}/m.wav", sha256="cd" * 32, call_id="call-9",
        heard=heard,
    )


def an_event(event: str, time: datetime, queue: str = "sales", call_id: str = "c1", tenant: str = "acme",
             **kw: object) -> QueueLogEntry:
    return QueueLogEntry(tenant=tenant, time=time, queue=queue, call_id=call_id, event=event, **kw)  # type: ignore[arg-type]


# -- calls ---------------------------------------------------------------------------------------------------


def test_call_round_trip_with_legs_variables_and_aware_times(store: Store) -> None:
    record = a_call()
    call_pk = store.add_call(record)
    assert isinstance(call_pk, int) and record.id == call_pk
    got = store.call("acme", "call-1")
    assert got == record  # every field, legs in order, variables (Persian keys and values)
    assert got is not None
    for t in (got.started, got.answered, got.ended, *(leg.started for leg in got.legs)):
        assert t is not None and t.tzinfo is not None and t.utcoffset() == timedelta(0)
    assert got.legs[1].answered is None and got.legs[1].cause == "no_answer"


def test_call_times_in_another_zone_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    local = datetime(2026, 3, 20, 11, 30, tzinfo=TEHRAN)
    store.add_call(a_call(started=local))
    got = store.call("acme", "call-1")
    assert got is not None
    assert got.started == local and got.started.tzinfo == UTC and got.started.hour == 8


def test_call_without_legs_or_optionals(store: Store) -> None:
    record = CallRecord("c-min", "acme", "1001", "1002", T0, "busy")
    store.add_call(record)
    assert store.call("acme", "c-min") == record


def test_naive_time_is_refused_with_the_field_name(store: Store) -> None:
    record = a_call()
    record.legs[2].ended = datetime(2026, 1, 1, 8, 0)
    with pytest.raises(ValueError, match=r"legs\[2\]\.ended"):
        store.add_call(record)
    assert store.calls("acme") == []


def test_duplicate_call_id_in_a_tenant_is_refused_but_other_tenants_may_reuse_it(store: Store) -> None:
    store.add_call(a_call())
    with pytest.raises(StoreError, match="refused"):
        store.add_call(a_call())
    store.add_call(a_call(tenant="globex"))
    assert len(store.calls("acme")) == len(store.calls("globex")) == 1


def test_calls_newest_first_limit_and_since(store: Store) -> None:
    for i in (3, 1, 4, 0, 2):
        store.add_call(a_call(f"c{i}", started=T0 + timedelta(minutes=i)))
    assert [c.call_id for c in store.calls("acme")] == ["c4", "c3", "c2", "c1", "c0"]
    assert [c.call_id for c in store.calls("acme", limit=2)] == ["c4", "c3"]
    since = T0 + timedelta(minutes=2)
    assert [c.call_id for c in store.calls("acme", since=since)] == ["c4", "c3", "c2"]
    # `since` given in another zone means the same instant
    assert [c.call_id for c in store.calls("acme", since=since.astimezone(TEHRAN))] == ["c4", "c3", "c2"]
    assert all(len(c.legs) == 3 for c in store.calls("acme"))


def test_calls_are_isolated_by_tenant(store: Store) -> None:
    store.add_call(a_call("acme-call", tenant="acme"))
    store.add_call(a_call("globex-call", tenant="globex"))
    assert [c.call_id for c in store.calls("acme")] == ["acme-call"]
    assert store.call("acme", "globex-call") is None
    assert store.call("globex", "acme-call") is None
    assert store.calls("initech") == []


# -- voicemail -----------------------------------------------------------------------------------------------


def test_voicemail_round_trip(store: Store) -> None:
    message = a_message()
    message_id = store.add_voicemail(message)
    assert message.id == message_id
    got = store.voicemail("acme", message_id)
    assert got == message
    assert got is not None and got.received.tzinfo == UTC
    anonymous = a_message(caller_name=None)
    store.add_voicemail(anonymous)
    assert store.voicemail("acme", anonymous.id or -1) == anonymous


def test_voicemails_newest_first_and_new_only(store: Store) -> None:
    old = a_message(received=T0)
    heard = a_message(received=T0 + timedelta(minutes=5), heard=True)
    new = a_message(received=T0 + timedelta(minutes=10))
    other_box = a_message(mailbox="1002", received=T0 + timedelta(minutes=1))
    for m in (heard, old, new, other_box):
        store.add_voicemail(m)
    assert [m.id for m in store.voicemails("acme", "1001")] == [new.id, heard.id, old.id]
    assert [m.id for m in store.voicemails("acme", "1001", new_only=True)] == [new.id, old.id]
    assert [m.id for m in store.voicemails("acme", "1002")] == [other_box.id]
    assert store.voicemails("acme", "9999") == []


def test_mark_heard_and_back(store: Store) -> None:
    message_id = store.add_voicemail(a_message())
    assert store.mark_heard("acme", message_id) is True
    assert store.voicemails("acme", "1001", new_only=True) == []
    got = store.voicemail("acme", message_id)
    assert got is not None and got.heard
    assert store.mark_heard("acme", message_id, heard=False) is True
    assert [m.id for m in store.voicemails("acme", "1001", new_only=True)] == [message_id]
    assert store.mark_heard("acme", message_id + 1000) is False


def test_delete_voicemail(store: Store) -> None:
    keep = store.add_voicemail(a_message())
    gone = store.add_voicemail(a_message())
    assert store.delete_voicemail("acme", gone) is True
    assert store.voicemail("acme", gone) is None
    assert store.delete_voicemail("acme", gone) is False
    assert [m.id for m in store.voicemails("acme", "1001")] == [keep]


def test_voicemail_is_isolated_by_tenant(store: Store) -> None:
    theirs = store.add_voicemail(a_message(tenant="globex"))
    store.add_voicemail(a_message(tenant="acme"))
    assert store.voicemail("acme", theirs) is None
    assert store.mark_heard("acme", theirs) is False
    assert store.delete_voicemail("acme", theirs) is False
    kept = store.voicemail("globex", theirs)
    assert kept is not None and not kept.heard  # untouched by the other tenant's attempts
    assert [m.tenant for m in store.voicemails("acme", "1001")] == ["acme"]


# -- queue log -----------------------------------------------------------------------------------------------


def test_queue_events_round_trip_in_time_order(store: Store) -> None:
    entries = [
        an_event("entered", T0, position=1, data={"caller": "+982188776655", "زبان": "فارسی"}),
        an_event("answered", T0 + timedelta(seconds=30), agent="1001", wait=30.0),
        an_event("offered", T0 + timedelta(seconds=10), agent="1001"),
        an_event("completed", T0 + timedelta(seconds=95), agent="1001", wait=30.0, talk=65.25),
    ]
    store.add_queue_events(entries)
    assert all(isinstance(e.id, int) for e in entries)
    got = store.queue_events("acme")
    assert [e.event for e in got] == ["entered", "offered", "answered", "completed"]
    assert got == sorted(entries, key=lambda e: e.time)
    assert got[0].data == {"caller": "+982188776655", "زبان": "فارسی"} and got[0].time.tzinfo == UTC
    store.add_queue_events([])  # nothing to do


def test_queue_events_with_the_same_time_keep_write_order(store: Store) -> None:
    store.add_queue_events([an_event(name, T0) for name in ("entered", "offered", "abandoned")])
    assert [e.event for e in store.queue_events("acme")] == ["entered", "offered", "abandoned"]


def test_queue_events_filters(store: Store) -> None:
    store.add_queue_events([
        an_event("entered", T0, queue="sales", call_id="c1"),
        an_event("entered", T0 + timedelta(seconds=1), queue="support", call_id="c2"),
        an_event("abandoned", T0 + timedelta(seconds=20), queue="sales", call_id="c1", wait=20.0),
        an_event("answered", T0 + timedelta(seconds=40), queue="support", call_id="c2", agent="1002"),
        an_event("entered", T0, queue="sales", call_id="c1", tenant="globex"),
    ])
    assert [e.event for e in store.queue_events("acme", queue="sales")] == ["entered", "abandoned"]
    assert [e.event for e in store.queue_events("acme", call_id="c2")] == ["entered", "answered"]
    assert [e.event for e in store.queue_events("acme", queue="sales", call_id="c2")] == []
    since = T0 + timedelta(seconds=20)
    assert [e.event for e in store.queue_events("acme", since=since)] == ["abandoned", "answered"]
    assert [e.event for e in store.queue_events("acme", limit=2)] == ["entered", "entered"]
    assert [e.tenant for e in store.queue_events("globex")] == ["globex"]
    assert store.queue_events("initech") == []


def test_queue_events_are_all_or_none(store: Store) -> None:
    bad = an_event("answered", T0)
    bad.time = datetime(2026, 1, 1)  # naive
    with pytest.raises(ValueError, match=r"QueueLogEntry\[1\]\.time"):
        store.add_queue_events([an_event("entered", T0), bad])
    assert store.queue_events("acme") == []


# -- durability ----------------------------------------------------------------------------------------------


def test_data_survives_closing_and_reopening(open_store: Callable[[], Store]) -> None:
    first = open_store()
    call = a_call()
    message = a_message()
    event = an_event("entered", T0, data={"k": "v"})
    first.add_call(call)
    first.add_voicemail(message)
    first.add_queue_events([event])
    first.mark_heard("acme", message.id or -1)
    first.close()

    second = open_store()  # migrate() again on an up-to-date database is a no-op
    assert second.call("acme", "call-1") == call
    message.heard = True
    assert second.voicemails("acme", "1001") == [message]
    assert second.queue_events("acme") == [event]


def test_writers_in_many_threads(store: Store) -> None:
    """Callers use asyncio.to_thread: writes from several threads at once all land (SQLite waits for its lock)."""
    from concurrent.futures import ThreadPoolExecutor

    def work(n: int) -> None:
        for i in range(10):
            store.add_queue_events([an_event("entered", T0 + timedelta(seconds=i), call_id=f"t{n}-{i}")])
            store.add_call(a_call(f"t{n}-{i}"))

    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(work, n) for n in range(6)]:
            future.result(timeout=60)
    assert len(store.queue_events("acme")) == 60
    assert len(store.calls("acme", limit=1000)) == 60


def test_add_calls_writes_a_batch_with_legs_in_order(store: Store) -> None:
    records = [a_call(f"batch-{i}", started=T0 + timedelta(seconds=i)) for i in range(30)]
    records[3].legs = []  # a call that never placed a leg
    store.add_calls(records)
    assert all(r.id is not None for r in records) and len({r.id for r in records}) == 30
    back = {r.call_id: r for r in store.calls("acme", limit=100)}
    assert set(back) == {r.call_id for r in records}
    for record in records:
        assert back[record.call_id].legs == record.legs
        assert back[record.call_id].variables == record.variables
    store.add_calls([])  # nothing to write is not an error
    with pytest.raises(StoreError):  # one bad record (a duplicate) and nothing of the batch is written
        store.add_calls([a_call("fresh"), a_call("batch-0")])
    assert store.call("acme", "fresh") is None

"""`PeopleService` on SQLite and PostgreSQL: users validated with named problems, sign-in with one answer for every
refusal, the lock-out, session limits, tokens limited by role and shown once, and the audit log."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from hatif.people import (
    PLATFORM,
    ROLE_SCOPES,
    DuplicateName,
    InvalidToken,
    InvalidUser,
    LastAdministrator,
    PeopleService,
    PeopleStore,
    Role,
    Scope,
    SignInRefused,
)
from hatif.people.credentials import Passwords, csrf_of, sha256
from hatif.people.model import LOCKOUT_FAILURES, LOCKOUT_WINDOW, SESSION_ABSOLUTE, SESSION_IDLE
from hatif.store import Store

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def people(store: Store, clock: Clock) -> PeopleService:
    return PeopleService(PeopleStore(store.engine), Passwords(FAST), clock, tenants=["acme", "globex"])


def test_add_user_names_each_problem(people: PeopleService) -> None:
    ann = people.add_user("acme", "ann", Role.ADMINISTRATOR, PASSWORD)
    assert ann.role is Role.ADMINISTRATOR and ann.tenant == "acme"
    with pytest.raises(DuplicateName, match="a user named 'ann' already exists in tenant 'acme'"):
        people.add_user("acme", "ann", Role.AGENT, PASSWORD)
    with pytest.raises(InvalidUser, match="too short"):
        people.add_user("acme", "bob", Role.AGENT, "short")
    with pytest.raises(InvalidUser, match="printable"):
        people.add_user("acme", " bob", Role.AGENT, PASSWORD)
    with pytest.raises(InvalidUser, match="unknown role 'boss'"):
        people.add_user("acme", "bob", "boss", PASSWORD)
    with pytest.raises(InvalidUser, match="no tenant 'initech'"):
        people.add_user("initech", "bob", Role.AGENT, PASSWORD)
    with pytest.raises(InvalidUser, match="platform tenant"):
        people.add_user("acme", "root", Role.OWNER, PASSWORD)
    with pytest.raises(InvalidUser, match="owners only"):
        people.add_user(PLATFORM, "root", Role.ADMINISTRATOR, PASSWORD)
    assert people.add_user(PLATFORM, "root", Role.OWNER, PASSWORD).tenant == PLATFORM
    assert people.add_user("globex", "ann", Role.AGENT, PASSWORD).tenant == "globex"  # names are per tenant


def test_sign_in_and_the_one_refusal(people: PeopleService) -> None:
    ann = people.add_user("acme", "ann", Role.SUPERVISOR, PASSWORD)
    signed = people.sign_in("acme", "ann", PASSWORD, "192.0.2.7")
    assert signed.user == ann and signed.csrf == csrf_of(signed.secret)
    assert people.store.session_by_secret(signed.secret) is None  # only the SHA-256 is kept
    who = people.session_of(signed.secret)
    assert who is not None and who.user == ann and who.via == "session" and who.csrf == signed.csrf
    assert Scope.CALLS_READ in who.scopes and Scope.USERS_ADMIN not in who.scopes
    messages = set()
    for tenant, name, password in [("acme", "ann", "wrong password"), ("acme", "nobody", PASSWORD),
                                   ("globex", "ann", PASSWORD), ("acme", "ann\x00", PASSWORD),
                                   ("acme\x00", "ann", PASSWORD)]:
        with pytest.raises(SignInRefused) as refused:
            people.sign_in(tenant, name, password, "192.0.2.7")
        messages.add(str(refused.value))
    assert len(messages) == 1
    people.sign_out(signed.secret)
    assert people.session_of(signed.secret) is None


def test_a_disabled_user_cannot_sign_in_and_loses_its_sessions(people: PeopleService) -> None:
    people.add_user("acme", "root", Role.ADMINISTRATOR, PASSWORD)
    bob = people.add_user("acme", "bob", Role.AGENT, PASSWORD)
    signed = people.sign_in("acme", "bob", PASSWORD, "192.0.2.7")
    people.update_user("acme", bob.id, disabled=True)
    assert people.session_of(signed.secret) is None
    with pytest.raises(SignInRefused):
        people.sign_in("acme", "bob", PASSWORD, "192.0.2.7")


@pytest.mark.parametrize("name", ["ann", "nobody"])
def test_lock_out_answers_the_same_for_known_and_unknown_names(people: PeopleService, clock: Clock,
                                                               name: str) -> None:
    people.add_user("acme", "ann", Role.AGENT, PASSWORD)
    for _ in range(LOCKOUT_FAILURES):
        with pytest.raises(SignInRefused):
            people.sign_in("acme", name, "wrong password", "192.0.2.7")
    with pytest.raises(SignInRefused) as locked:
        people.sign_in("acme", name, PASSWORD, "192.0.2.7")  # even the right password, while locked
    assert str(locked.value) == str(SignInRefused())
    assert people.store.failures("acme", name, T0 - LOCKOUT_WINDOW) == [T0] * LOCKOUT_FAILURES  # not counted
    clock.advance(LOCKOUT_WINDOW)
    if name == "ann":
        assert people.sign_in("acme", name, PASSWORD, "192.0.2.7").user.name == "ann"
        assert people.store.failures("acme", name, T0) == []  # a success forgets the failures
    else:
        with pytest.raises(SignInRefused):
            people.sign_in("acme", name, PASSWORD, "192.0.2.7")


def test_sign_in_takes_about_as_long_for_unknown_and_known_names(store: Store) -> None:
    """The real argon2 work (RFC 9106 second recommendation's shape, smaller memory to keep the test short) is
    spent whether the name exists or not."""
    people = PeopleService(PeopleStore(store.engine), Passwords(PasswordHasher(time_cost=3, memory_cost=32768)))
    people.add_user("acme", "ann", Role.AGENT, PASSWORD)

    def median(name: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            with pytest.raises(SignInRefused):
                people.sign_in("acme", name, "wrong password", "192.0.2.7")
            times.append(time.perf_counter() - start)
        return sorted(times)[1]

    known, unknown = median("ann"), median("nobody")
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_sessions_end_when_idle_or_old(people: PeopleService, clock: Clock) -> None:
    people.add_user("acme", "ann", Role.AGENT, PASSWORD)
    idle = people.sign_in("acme", "ann", PASSWORD, "192.0.2.7").secret
    clock.advance(SESSION_IDLE)
    assert people.session_of(idle) is None
    busy = people.sign_in("acme", "ann", PASSWORD, "192.0.2.7").secret
    for _ in range(int(SESSION_ABSOLUTE / timedelta(minutes=20))):
        assert people.session_of(busy) is not None  # touched every 20 minutes: never idle
        clock.advance(timedelta(minutes=20))
    assert people.session_of(busy) is None  # but 12 hours is the end


def test_tokens_are_shown_once_limited_by_role_and_revocable(people: PeopleService, clock: Clock) -> None:
    ann = people.add_user("acme", "ann", Role.SUPERVISOR, PASSWORD)
    issued = people.create_token("acme", ann.id, "wallboard", [Scope.CALLS_READ])
    assert issued is not None and issued.secret.startswith("hatif_")
    assert people.store.token_by_secret(sha256(issued.secret)) is not None
    assert people.store.token_by_secret(issued.secret) is None  # the secret itself is not kept
    who = people.principal_of_token(issued.secret)
    assert who is not None and who.scopes == {Scope.CALLS_READ} and who.via == "token" and who.user == ann
    with pytest.raises(InvalidToken, match="does not grant users:admin"):
        people.create_token("acme", ann.id, "too much", [Scope.USERS_ADMIN])
    with pytest.raises(InvalidToken, match="unknown scope nope"):
        people.create_token("acme", ann.id, "bad", ["nope"])
    with pytest.raises(InvalidToken, match="token name"):
        people.create_token("acme", ann.id, "", None)
    assert people.create_token("globex", ann.id, "elsewhere", None) is None  # another tenant's user
    everything = people.create_token("acme", ann.id, "all", None)
    assert everything is not None and everything.token.scopes == ROLE_SCOPES[Role.SUPERVISOR]
    people.add_user("acme", "root", Role.ADMINISTRATOR, PASSWORD)
    people.update_user("acme", ann.id, role=Role.AGENT)  # demoted: the token loses what agents lack
    who = people.principal_of_token(everything.secret)
    assert who is not None and who.scopes == ROLE_SCOPES[Role.AGENT]
    assert people.revoke_token("globex", ann.id, issued.token.id) is None
    assert people.revoke_token("acme", ann.id, issued.token.id) is not None
    assert people.principal_of_token(issued.secret) is None
    expiring = people.create_token("acme", ann.id, "day", None, expires=T0 + timedelta(days=1))
    assert expiring is not None and people.principal_of_token(expiring.secret) is not None
    clock.advance(timedelta(days=1))
    assert people.principal_of_token(expiring.secret) is None
    assert [t.name for t in people.tokens("acme", ann.id)] == ["wallboard", "all", "day"]


def test_the_last_administrator_stays(people: PeopleService) -> None:
    ann = people.add_user("acme", "ann", Role.ADMINISTRATOR, PASSWORD)
    for change in ({"role": Role.AGENT}, {"disabled": True}):
        with pytest.raises(LastAdministrator, match="last administrator of tenant 'acme'"):
            people.update_user("acme", ann.id, **change)  # type: ignore[arg-type]
    with pytest.raises(LastAdministrator):
        people.delete_user("acme", ann.id)
    people.add_user("acme", "bea", Role.ADMINISTRATOR, PASSWORD)
    assert people.delete_user("acme", ann.id)


def test_every_change_is_audited_with_who_what_when_and_where(people: PeopleService, clock: Clock) -> None:
    ann = people.add_user("acme", "ann", Role.ADMINISTRATOR, PASSWORD)
    admin = people.session_of(people.sign_in("acme", "ann", PASSWORD, "192.0.2.7").secret)
    assert admin is not None
    clock.advance(timedelta(minutes=1))
    bob = people.add_user("acme", "bob", Role.AGENT, PASSWORD, by=admin, address="192.0.2.7")
    people.update_user("acme", bob.id, role=Role.SUPERVISOR, password="another long one", by=admin,
                       address="192.0.2.8")
    issued = people.create_token("acme", bob.id, "ci", None, by=admin, address="192.0.2.9")
    assert issued is not None
    people.revoke_token("acme", bob.id, issued.token.id, by=admin, address="192.0.2.9")
    people.delete_user("acme", bob.id, by=admin, address="192.0.2.10")
    entries = people.audit_log("acme")
    assert [e.action for e in entries] == ["user.deleted", "token.revoked", "token.created", "user.changed",
                                           "user.added", "user.added"]
    assert {(e.actor, e.actor_id) for e in entries[:-1]} == {("ann", ann.id)}
    assert (entries[-1].actor, entries[-1].address) == ("command line", "local")
    assert [e.address for e in entries[:-1]] == ["192.0.2.10", "192.0.2.9", "192.0.2.9", "192.0.2.8", "192.0.2.7"]
    assert entries[3].detail == {"role": {"from": "agent", "to": "supervisor"}, "password": "changed"}
    assert entries[0].at == T0 + timedelta(minutes=1) and entries[-1].at == T0
    assert "another long one" not in repr(entries)
    assert people.audit_log("globex") == []


def test_a_platform_owner_holds_every_scope(people: PeopleService) -> None:
    people.add_user(PLATFORM, "root", Role.OWNER, PASSWORD)
    who = people.session_of(people.sign_in(PLATFORM, "root", PASSWORD, "192.0.2.7").secret)
    assert who is not None and who.owner and who.scopes == frozenset(Scope)
    bob = people.add_user("globex", "bob", Role.AGENT, PASSWORD, by=who, address="192.0.2.7")
    (entry,) = [e for e in people.audit_log("globex") if e.action == "user.added"]
    assert entry.actor == "root@*" and entry.target == f"user {bob.id} (bob)"


def test_failures_of_every_name_age_out_of_the_table(people: PeopleService, clock: Clock) -> None:
    for i in range(20):  # a guesser spraying names
        with pytest.raises(SignInRefused):
            people.sign_in("acme", f"guess{i}", "wrong password", "192.0.2.7")
    clock.advance(LOCKOUT_WINDOW + timedelta(seconds=1))
    with pytest.raises(SignInRefused):
        people.sign_in("acme", "one more", "wrong password", "192.0.2.7")
    assert people.store.failures("acme", "guess0", T0 - LOCKOUT_WINDOW) == []
    assert people.store.failures("acme", "one more", T0) == [clock.now]

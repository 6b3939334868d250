"""The people store and rules: users unique per tenant, sessions and tokens by SHA-256, the lock-out window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from hatif.people import DuplicateName, PeopleStore, Role, Scope
from hatif.people.credentials import Passwords, csrf_of, new_token, sha256
from hatif.people.model import LOCKOUT_WINDOW, lockout_remaining, password_problem
from hatif.store import Store

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def test_users_sessions_tokens_and_failures(store: Store) -> None:
    people = PeopleStore(store.engine)
    ann = people.add_user("acme", "ann", Role.ADMINISTRATOR, "h", T0)
    with pytest.raises(DuplicateName):
        people.add_user("acme", "ann", Role.AGENT, "h", T0)
    people.add_user("globex", "ann", Role.AGENT, "h", T0)  # same name, other tenant
    assert people.user("globex", ann.id) is None and people.user("acme", ann.id) == ann
    session = people.add_session(ann, sha256("s"), T0)
    assert people.session_by_secret(sha256("s")) == (session, ann)
    token = people.add_token(ann, "ci", sha256("t"), frozenset({Scope.CALLS_READ}), T0, None)
    assert people.revoke_token("globex", ann.id, token.id, T0) is None
    revoked = people.revoke_token("acme", ann.id, token.id, T0)
    assert revoked is not None and not revoked.usable(T0)
    people.add_failure("acme", "nobody", T0, T0 - LOCKOUT_WINDOW)
    assert people.failures("acme", "nobody", T0 - LOCKOUT_WINDOW) == [T0]
    assert people.delete_user("acme", ann.id)
    assert people.session_by_secret(sha256("s")) is None and people.token_by_secret(sha256("t")) is None


def test_lockout_window() -> None:
    four = [T0 + timedelta(minutes=i) for i in range(4)]
    assert lockout_remaining(four, T0 + timedelta(minutes=5)) is None
    five = [*four, T0 + timedelta(minutes=4)]
    assert lockout_remaining(five, T0 + timedelta(minutes=5)) == timedelta(minutes=10)
    assert lockout_remaining(five, T0 + timedelta(minutes=15)) is None


def test_passwords_and_secrets() -> None:
    passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    stored = passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert passwords.verify(stored, "correct horse battery") and not passwords.verify(stored, "wrong")
    assert password_problem("") and password_problem("short") and password_problem("long enough pw") is None
    assert new_token().startswith("hatif_") and csrf_of("a") != csrf_of("b")

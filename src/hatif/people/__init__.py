"""People and roles: users with argon2id password hashes, per-tenant roles (agent, supervisor, administrator)
and platform owners, browser sessions, API tokens with scopes, the sign-in lock-out and the audit log.

`model` holds the rules as plain data and pure functions (who may do what, when a name is locked out, what a
password must be); `credentials` makes and checks secrets; `store` keeps people in the database; `service` is
what the web API and the command line call.
"""

from hatif.people.model import PLATFORM, ROLE_SCOPES, AuditEntry, Person, Principal, Role, Scope, Token
from hatif.people.service import (
    InvalidToken,
    InvalidUser,
    IssuedToken,
    LastAdministrator,
    PeopleRefusal,
    PeopleService,
    SignedIn,
    SignInRefused,
)
from hatif.people.store import DuplicateName, PeopleStore

__all__ = [
           "PLATFORM",
           "ROLE_SCOPES",
           "AuditEntry",
           "DuplicateName",
           "InvalidToken",
           "InvalidUser",
           "IssuedToken",
           "LastAdministrator",
           "PeopleRefusal",
           "PeopleService",
           "PeopleStore",
           "Person",
           "Principal",
           "Role",
           "Scope",
           "SignInRefused",
           "SignedIn",
           "Token",
]

"""The people of the web tests: users of every role in two tenants and a platform owner, each with a bearer
token of every scope its role grants (built by the `world` fixture of conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from hatif.people import PLATFORM, PeopleService, Person, Role

PASSWORD = "correct horse battery"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PEOPLE = [("acme", "amal", Role.AGENT), ("acme", "sami", Role.SUPERVISOR), ("acme", "adel", Role.ADMINISTRATOR),
          ("acme", "tara", Role.AGENT), ("globex", "gina", Role.ADMINISTRATOR), ("globex", "gus", Role.AGENT),
          (PLATFORM, "root", Role.OWNER)]


@dataclass
class World:
    """The people app: `client` (no cookies yet), `people`, each user by name, and a bearer token per user with
    every scope of its role."""
    client: TestClient
    people: PeopleService
    users: dict[str, Person]
    tokens: dict[str, str]

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def session(self, name: str, *, https: bool = False) -> tuple[TestClient, str]:
        """A new client signed in as `name`, and the CSRF token of its session."""
        client = TestClient(self.client.app, base_url="https://testserver" if https else "http://testserver")
        user = self.users[name]
        r = client.post("/api/v1/session", json={"tenant": user.tenant, "name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return client, r.json()["csrf_token"]

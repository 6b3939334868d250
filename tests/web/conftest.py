"""The API over a real Store (a SQLite file in tmp_path), two tenants with a token each, WAV files, and the people
of both tenants (`world`)."""

from __future__ import annotations

import hashlib
import math
import struct
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from people_world import FAST_HASHER, PASSWORD, PEOPLE, World

from hatif.people import PeopleService, PeopleStore
from hatif.people.credentials import Passwords
from hatif.store import Store
from hatif.web import create_api

ACME = "acme-token-3f9a1c"
GLOBEX = "globex-token-77be02"
TOKENS = {ACME: "acme", GLOBEX: "globex"}


def write_wav(path: Path, seconds: float = 0.5, freq: float = 440.0) -> str:
    """A mono 8 kHz 16-bit tone, as voicemail is recorded; returns its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(8000 * seconds)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / 8000))) for i in range(n))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(path=tmp_path / "var" / "hatif.db") as store:
        store.migrate()
        yield store


@pytest.fixture
def app(store: Store) -> FastAPI:
    return create_api(store, TOKENS)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def make_wav() -> Callable[..., str]:
    """`make_wav(path, seconds=0.5, freq=440.0) -> sha256`."""
    return write_wav


@pytest.fixture
def acme() -> dict[str, str]:
    """Headers with the token of tenant `acme`."""
    return {"Authorization": f"Bearer {ACME}"}


@pytest.fixture
def globex() -> dict[str, str]:
    """Headers with the token of tenant `globex`."""
    return {"Authorization": f"Bearer {GLOBEX}"}


# -- people ---------------------------------------------------------------------------------------------------


@pytest.fixture
def people(store: Store) -> PeopleService:
    return PeopleService(PeopleStore(store.engine), Passwords(FAST_HASHER), tenants=["acme", "globex"])


@pytest.fixture
def world(store: Store, people: PeopleService) -> Iterator[World]:
    users = {name: people.add_user(tenant, name, role, PASSWORD) for tenant, name, role in PEOPLE}
    tokens = {}
    for name, user in users.items():
        issued = people.create_token(user.tenant, user.id, "all", None)
        assert issued is not None
        tokens[name] = issued.secret
    with TestClient(create_api(store, TOKENS, people=people)) as client:
        yield World(client, people, users, tokens)

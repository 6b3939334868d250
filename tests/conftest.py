"""Suite-wide fixtures: free loopback ports, and the `interop` marker on tests that run outside programs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_INTEROP = Path(__file__).parent / "interop"
if str(_INTEROP) not in sys.path:
    sys.path.append(str(_INTEROP))  # the harness is imported as `peers`, from tests and from bench/

import peers  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interop: tests against outside programs (SIPp, baresip)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEROP in item.path.parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture
def free_port() -> Callable[..., int]:
    """`free_port(udp=True, tcp=True, span=1)`: a port free on 127.0.0.1, never the same one twice."""
    return peers.free_port

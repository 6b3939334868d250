"""The shipped demo configuration (`examples/demo.yaml`) as a test may run it: changed only where a test must.

Acceptance tests run what a user runs. Only what cannot stay is changed: listen addresses and ports (free ones
on loopback), folders (the test's own), the HTTP API port and the log level. Security, digest algorithms,
bans, timers, the dial plan and the users are left exactly as shipped, so a default that locks a client out
fails here first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"
DEMO_PASSWORD = "hatif-demo"


def demo_data(tmp: Path, *, sip_port: int, api_port: int, rtp: tuple[int, int] | None = None,
              log_level: str = "warning") -> dict[str, Any]:
    """examples/demo.yaml as data, with loopback ports and `tmp` folders; the rest as shipped."""
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["sip"]["listen"] = [f"udp:127.0.0.1:{sip_port}", f"tcp:127.0.0.1:{sip_port}"]
    data["media"].update({"host": "127.0.0.1", "recordings": str(tmp / "recordings"), "cache": str(tmp / "cache")})
    if rtp is not None:
        data["media"].update({"port_min": rtp[0], "port_max": rtp[1]})
    data["voicemail"] = {"folder": str(tmp / "voicemail")}
    data["store"] = {"path": str(tmp / "hatif.db")}
    data["api"]["listen"] = f"127.0.0.1:{api_port}"
    data["logging"] = {"level": log_level}
    return data


def demo_yaml(tmp: Path, **kw: Any) -> str:
    """`demo_data` as YAML text (for `RunningHatif` or a config file of a server process)."""
    return yaml.safe_dump(demo_data(tmp, **kw), allow_unicode=True)

"""The `hatif` command (hatif.cli) and the log formats it sets up (hatif.log)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hatif
from hatif import __version__, cli
from hatif.config import Config
from hatif.log import setup_logging

GOOD = """\
sip:
  listen: ["udp:127.0.0.1:5062"]
tenants:
  - name: default
    users:
      - {username: "1001", password: amira-secret-1}
"""

DEMO_PASSWORDS = """\
logging: {format: json, level: debug}
tenants:
  - name: default
    users:
      - {username: "1001", password: hatif-demo}
      - {username: "1002", password: reza-secret-22}
"""

BAD = """\
tenants:
  - name: default
    users:
      - {username: "1001"}
"""


@pytest.fixture(autouse=True)
def root_logger() -> Iterator[None]:
    """`setup_logging` changes the root logger; put it back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Replace `hatif.app` (the real server) with one whose `run` records the configuration it gets."""
    started: list[Config] = []
    module = types.ModuleType("hatif.app")

    def run(config: Config, demo: bool = False, quiet: bool = False) -> int:
        started.append(config)
        logging.getLogger("hatif.app").info("hatif started", extra={"fields": {"tenants": len(config.tenants)}})
        return 0

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hatif.app", module)
    monkeypatch.setattr(hatif, "app", module, raising=False)
    return started


def write(tmp_path: Path, text: str, name: str = "hatif.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- check-config and --version ---------------------------------------------------------------------------


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    assert cli.main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{path}: ok"
    assert "udp:127.0.0.1:5062" in out
    assert "demo password" not in out
    assert err == ""


def test_check_config_reports_every_error_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BAD)
    assert cli.main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}:4: tenants[0].users[0].password: field required\n"


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml: no such file" in capsys.readouterr().err


def test_check_config_of_the_demo_warns_about_its_passwords(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(cli.DEMO_CONFIG)]) == 0
    assert "warning: demo password in use by 1001, 1002, 1003, 1004, 1005" in capsys.readouterr().out


def test_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hatif {__version__}"
    assert cli.main([]) == 2
    assert "usage: hatif" in capsys.readouterr().err
    assert cli.main(["serve"]) == 2  # --config is required
    assert "--config" in capsys.readouterr().err
    assert cli.main(["serve", "--config", "x.yaml", "--sip", "5060"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


# -- serve and demo ---------------------------------------------------------------------------------------


def test_serve_refuses_a_bad_config_before_starting(tmp_path: Path, fake_app: list[Config],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BAD)
    assert cli.main(["serve", "--config", str(path)]) == 2
    assert fake_app == []
    assert f"{path}:4: tenants[0].users[0].password: field required" in capsys.readouterr().err


def test_serve_overrides_listen_and_logs_json(tmp_path: Path, fake_app: list[Config],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    assert cli.main(["serve", "--config", str(path), "--sip", "[::1]:5070", "--log-format", "json"]) == 0
    (config,) = fake_app
    assert [str(a) for a in config.sip.listen] == ["udp:[::1]:5070", "tcp:[::1]:5070"]
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    started = [r for r in records if r["msg"] == "hatif started"]
    assert started and started[0]["tenants"] == 1 and started[0]["logger"] == "hatif.app"
    assert not [r for r in records if r["level"] == "warning"]


def test_serve_warns_about_demo_credentials(tmp_path: Path, fake_app: list[Config],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, DEMO_PASSWORDS)
    assert cli.main(["serve", "--config", str(path)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]  # format: json from the file
    (warning,) = [r for r in records if r["level"] == "warning"]
    assert warning["msg"].startswith("demo credentials in use")
    assert warning["users"] == "1001"


def test_log_level_flag_overrides_the_file(tmp_path: Path, fake_app: list[Config],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, DEMO_PASSWORDS)
    assert cli.main(["serve", "--config", str(path), "--log-level", "error", "--log-format", "plain"]) == 0
    assert capsys.readouterr().err == ""


def test_serve_reports_a_server_that_cannot_start(tmp_path: Path, fake_app: list[Config],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def busy(config: Config, demo: bool = False, quiet: bool = False) -> int:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(sys.modules["hatif.app"], "run", busy)
    assert cli.main(["serve", "--config", str(write(tmp_path, GOOD))]) == 1
    assert re.search(r" ERROR hatif\.cli cannot start error=\"\[Errno 98\] Address already in use\"",
                     capsys.readouterr().err)


def test_demo_runs_the_shipped_config(fake_app: list[Config], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--sip", "127.0.0.1:5098"]) == 0
    (config,) = fake_app
    assert [u.username for u in config.tenants[0].users][:5] == ["1001", "1002", "1003", "1004", "1005"]
    assert [str(a) for a in config.sip.listen] == ["udp:127.0.0.1:5098", "tcp:127.0.0.1:5098"]
    assert "WARNING hatif.cli demo credentials in use" in capsys.readouterr().err


def test_demo_without_its_file(tmp_path: Path, fake_app: list[Config], monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "DEMO_CONFIG", tmp_path / "examples" / "demo.yaml")
    assert cli.main(["demo"]) == 2
    assert fake_app == []
    assert "the demo configuration is not at" in capsys.readouterr().err


# -- log formats ------------------------------------------------------------------------------------------


def test_plain_lines() -> None:
    stream = io.StringIO()
    setup_logging("info", "plain", stream)
    log = logging.getLogger("hatif.sip.registrar")
    log.info("registered", extra={"fields": {"user": "1001", "contact": "sip:1001@10.0.0.7:5060", "n": 2}})
    log.debug("not shown")
    log.warning("odd agent", extra={"fields": {"ua": "Evil\nINFO hatif forged=1", "empty": ""}})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO hatif\.sip\.registrar registered "
                        r"user=1001 contact=sip:1001@10\.0\.0\.7:5060 n=2", lines[0])
    assert lines[1].endswith(' WARNING hatif.sip.registrar odd agent ua="Evil\\nINFO hatif forged=1" empty=""')


def test_json_lines_parse_with_their_fields() -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    log = logging.getLogger("hatif.test")
    log.debug("call %s", "answered", extra={"fields": {"call_id": "c1", "legs": 2, "msg": "clash", "path": Path("/x")}})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "debug" and first["logger"] == "hatif.test" and first["msg"] == "call answered"
    assert (first["call_id"], first["legs"], first["field.msg"], first["path"]) == ("c1", 2, "clash", "/x")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["msg"] == "failed" and "RuntimeError: boom" in second["exc"]


def test_setup_logging_replaces_its_handler_and_checks_its_arguments() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", "plain", first)
    setup_logging("info", "plain", second)
    logging.getLogger("hatif.test").info("once")
    assert first.getvalue() == "" and "once" in second.getvalue()
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("loud")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        setup_logging("info", "xml")  # type: ignore[arg-type]


def test_serve_names_an_unreachable_broker_and_exits_1(tmp_path: Path, free_port: object) -> None:
    """A real `hatif serve` whose `bus:` points where no NATS server listens: one line naming the URL, exit 1,
    within seconds (not a reconnect loop, not a traceback)."""
    import subprocess

    port = free_port(tcp=False)  # type: ignore[operator]
    config = write(tmp_path, f"""\
sip:
  listen: ["udp:127.0.0.1:{port}"]
store:
  path: {tmp_path / "var" / "hatif.db"}
voicemail:
  folder: {tmp_path / "var" / "voicemail"}
bus:
  url: nats://127.0.0.1:9
tenants:
  - name: default
    users:
      - {{username: "1001", password: amira-secret-1}}
""")
    done = subprocess.run([sys.executable, "-m", "hatif", "serve", "--config", str(config)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "cannot start" in done.stderr and "cannot reach NATS at nats://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


# -- hatif user ---------------------------------------------------------------------------------------------


def user_config(tmp_path: Path, api: int | None = None, sip: int = 5062, tenants: tuple[str, ...] = ("acme",)) -> Path:
    listen = f"api: {{listen: '127.0.0.1:{api}'}}\n" if api is not None else ""
    blocks = "".join(f"  - name: {t}\n    users:\n      - {{username: '1001', password: amira-secret-1}}\n"
                     for t in tenants)
    return write(tmp_path, f"sip:\n  listen: ['udp:127.0.0.1:{sip}']\nstore:\n  path: {tmp_path / 'var' / 'hatif.db'}\n"
                           f"voicemail:\n  folder: {tmp_path / 'var' / 'voicemail'}\n{listen}tenants:\n{blocks}")


class Stdin(io.StringIO):
    """A piped standard input (not a terminal)."""

    def isatty(self) -> bool:
        return False


def user(args: list[str], monkeypatch: pytest.MonkeyPatch, password: str = "correct horse battery\n") -> int:
    monkeypatch.setattr(sys, "stdin", Stdin(password))
    return cli.main(["user", *args])


def test_user_add_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    config = str(user_config(tmp_path))
    assert user(["add", "ann", "--role", "administrator", "--config", config], monkeypatch) == 0
    assert capsys.readouterr().out == "added administrator 'ann' to tenant 'acme' (user 1)\n"
    assert user(["add", "root", "--role", "owner", "--config", config], monkeypatch) == 0
    assert "to tenant '*'" in capsys.readouterr().out
    assert user(["list", "--config", config], monkeypatch) == 0
    assert capsys.readouterr().out == "1\tann\tadministrator\n"
    assert user(["list", "--tenant", "*", "--config", config], monkeypatch) == 0
    assert capsys.readouterr().out == "2\troot\towner\n"


@pytest.mark.parametrize(("args", "password", "message"), [
    (["add", "ann", "--role", "administrator"], "correct horse battery\n",
     "a user named 'ann' already exists in tenant 'acme'"),
    (["add", "bob", "--role", "agent"], "short\n", "the password is too short: at least 10 characters are needed"),
    (["add", "bob", "--role", "agent"], "\n", "the password is empty"),
    (["add", " bob", "--role", "agent"], "correct horse battery\n",
     "a user name is 1 to 200 printable characters without surrounding white space"),
    (["add", "bob", "--role", "boss"], "correct horse battery\n",
     "unknown role 'boss'; one of agent, supervisor, administrator, owner"),
    (["add", "bob", "--role", "agent", "--tenant", "globex"], "correct horse battery\n",
     "no tenant 'globex'; the configured tenants are acme"),
])
def test_user_add_refusals_are_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], args: list[str],
                                                   password: str, message: str) -> None:
    config = str(user_config(tmp_path))
    assert user(["add", "ann", "--role", "administrator", "--config", config], monkeypatch) == 0
    capsys.readouterr()
    assert user([*args, "--config", config], monkeypatch, password) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"hatif user add: {message}\n")


def test_user_add_asks_for_the_tenant_when_there_are_several(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = str(user_config(tmp_path, tenants=("acme", "globex")))
    assert user(["add", "ann", "--role", "agent", "--config", config], monkeypatch) == 1
    assert capsys.readouterr().err == ("hatif user add: name the tenant with --tenant: this configuration has "
                                       "acme, globex\n")


def test_a_password_from_a_pipe_keeps_its_spaces_and_loses_its_line_end() -> None:
    assert cli.read_password(Stdin("  spaced out pass \r\n")) == "  spaced out pass "


def test_a_password_from_a_terminal_is_asked_twice_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["correct horse battery", "correct horse battery", "one", "two"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(answers))
    assert cli.read_password(Tty()) == "correct horse battery"
    with pytest.raises(cli.UserCommandRefused, match="the two passwords differ"):
        cli.read_password(Tty())


def test_a_user_added_by_the_command_line_signs_in_to_hatif_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_port: Any) -> None:
    """`hatif user add`, then the real server (`hatif.app.start`, as `hatif serve` runs it) on the same store:
    the administrator signs in over HTTP and adds an agent with its CSRF token."""
    import httpx

    from hatif_server import RunningHatif

    config = user_config(tmp_path, api=free_port(udp=False), sip=free_port(tcp=False))
    assert user(["add", "ann", "--role", "administrator", "--config", str(config)], monkeypatch) == 0
    with RunningHatif(config.read_text()) as running:
        port = running.h.api_port
        assert port is not None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            refused = client.post("/api/v1/session", json={"tenant": "acme", "name": "ann", "password": "wrong!"})
            assert refused.status_code == 401
            r = client.post("/api/v1/session", json={"tenant": "acme", "name": "ann",
                                                     "password": "correct horse battery"})
            assert r.status_code == 200 and r.json()["user"]["role"] == "administrator"
            assert "httponly" in r.headers["set-cookie"].lower()
            csrf = r.json()["csrf_token"]
            body = {"name": "amal", "role": "agent", "password": "another long one"}
            assert client.post("/api/v1/users", json=body).status_code == 403
            assert client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
            audit = client.get("/api/v1/audit").json()
            assert [(e["action"], e["actor"], e["address"]) for e in audit] == [
                ("user.added", "ann", "127.0.0.1"), ("user.added", "command line", "local")]

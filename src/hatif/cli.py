"""The `hatif` command: `serve`, `demo`, `simulate`, `check-config`, `user add|list`, `config import|export`
and `--version`.

Exit codes: 0 success, 1 the server could not start (for instance a port in use) or `hatif user` refused (a
bad name, a weak password, a name taken, an unknown role or tenant: one line on standard error), 2 a usage or
configuration error (each problem written to standard error as `file:line: field: reason`), 130 stopped
by Ctrl-C. Command output goes to standard output and diagnostics to standard error; the running server
reports through `hatif.log`.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from . import __version__
from .config import Config, ConfigError, ListenAddress, load_config, parse_host_port
from .errors import HatifError
from .log import LEVELS, setup_logging
from .sim import cli as sim_cli

if TYPE_CHECKING:
    from .store.db import Store

log = logging.getLogger(__name__)

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
"""The shipped demo configuration, in the source tree next to `src/`."""


def _listen_override(text: str) -> tuple[ListenAddress, ...]:
    """`--sip HOST:PORT`: udp and tcp listeners on that address."""
    try:
        host, port = parse_host_port(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    return ListenAddress("udp", host, port), ListenAddress("tcp", host, port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hatif", description="Hatif (هاتف): a self-hosted contact-center platform.")
    parser.add_argument("--version", action="version", version=f"hatif {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    def server_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--sip", metavar="HOST:PORT", type=_listen_override,
                         help="listen for SIP on udp and tcp at HOST:PORT instead of sip.listen")
        sub.add_argument("--log-format", choices=("plain", "json"), help="overrides logging.format")
        sub.add_argument("--log-level", choices=tuple(LEVELS), help="overrides logging.level")

    serve = verbs.add_parser("serve", help="run the server with a configuration file")
    serve.add_argument("--config", metavar="FILE", required=True, type=Path, help="the YAML configuration")
    server_options(serve)
    demo = verbs.add_parser("demo", help=f"run the demo center ({DEMO_CONFIG.name}: users 1001-1005)")
    server_options(demo)
    demo.add_argument("--quiet", action="store_true",
                      help="no virtual callers and agents (by default a gentle stream of calls flows at once)")
    check = verbs.add_parser("check-config", help="validate a configuration file and summarise it")
    check.add_argument("file", metavar="FILE", type=Path)
    sim_cli.add_parser(verbs)
    user = verbs.add_parser("user", help="add and list the people who sign in to the web API")
    user_verbs = user.add_subparsers(dest="user_verb", metavar="ACTION", required=True)
    add = user_verbs.add_parser("add", help="add a user; the password is read from standard input")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, metavar="ROLE",
                     help="agent, supervisor, administrator, or owner (of the platform: every tenant)")
    listing = user_verbs.add_parser("list", help="list the users of a tenant")
    for sub in (add, listing):
        sub.add_argument("--tenant", metavar="T",
                         help="the tenant (default: the configuration's only one; * for owners)")
        sub.add_argument("--config", metavar="FILE", type=Path,
                         help="the YAML configuration naming the store (default: the store at var/hatif.db)")
    center = verbs.add_parser("config", help="move a whole center's tenants out of the store and into it")
    center_verbs = center.add_subparsers(dest="config_verb", metavar="ACTION", required=True)
    export = center_verbs.add_parser("export", help="write the store's tenants as YAML to standard output")
    export.add_argument("--tenant", metavar="T", help="only this tenant")
    load = center_verbs.add_parser("import", help="validate FILE's tenants, then put them in the store (all or "
                                                  "nothing), replacing those of the same name")
    load.add_argument("file", metavar="FILE", type=Path)
    for sub in (export, load):
        sub.add_argument("--config", metavar="FILE", type=Path,
                         help="the boot configuration naming the store (default: the store at var/hatif.db)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors: argparse has written its output
        return e.code if isinstance(e.code, int) else 2
    if args.verb == "check-config":
        return check_config(args.file)
    if args.verb == "simulate":
        return sim_cli.run(args)
    if args.verb == "user":
        return user_command(args)
    if args.verb == "config":
        return config_command(args)
    if args.verb == "serve":
        return serve(args.config, args.sip, args.log_format, args.log_level)
    if args.verb == "demo":
        if not DEMO_CONFIG.is_file():
            sys.stderr.write(f"hatif demo: the demo configuration is not at {DEMO_CONFIG} (it ships in the "
                             "source tree as examples/demo.yaml); use `hatif serve --config FILE`\n")
            return 2
        return serve(DEMO_CONFIG, args.sip, args.log_format, args.log_level, demo=True, quiet=args.quiet)
    parser.print_help(sys.stderr)
    return 2


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as e:
        sys.stderr.write("".join(f"{message}\n" for message in e.messages))
        return None


def check_config(path: Path) -> int:
    """Validate only: a one-paragraph summary on success (exit 0), every problem on failure (exit 2)."""
    config = _load(path)
    if config is None:
        return 2
    users = sum(len(t.users) for t in config.tenants)
    endpoints = sum(len(t.endpoints) for t in config.tenants)
    rules = sum(len(t.dialplan) for t in config.tenants)
    lines = [
        f"{path}: ok",
        f"  tenants: {', '.join(t.name for t in config.tenants)}",
        f"  users: {users}, endpoints: {endpoints}, dial-plan rules: {rules}",
        f"  sip: {', '.join(str(a) for a in config.sip.listen)}",
    ]
    demo = config.demo_credentials_in_use()
    if demo:
        lines.append(f"  warning: demo password in use by {', '.join(demo)}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def read_password(stdin: TextIO | None = None) -> str:
    """The new user's password: asked twice without echo on a terminal, else the first line of standard input
    (`printf '%s\\n' "$PASSWORD" | hatif user add ...`), without its line ending."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UserCommandRefused("the two passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")


class UserCommandRefused(HatifError):
    """`hatif user` cannot do what was asked; the message is the one line written to standard error."""


def _user_tenant(args: argparse.Namespace, config: Config | None) -> str:
    from .people import PLATFORM, Role

    if args.tenant is not None:
        return str(args.tenant)
    if getattr(args, "role", None) == Role.OWNER.value:
        return PLATFORM
    if config is None:
        return "default"
    if len(config.tenants) == 1:
        return config.tenants[0].name
    raise UserCommandRefused(f"name the tenant with --tenant: this configuration has "
                       f"{', '.join(t.name for t in config.tenants)}")


@contextlib.contextmanager
def _migrated_store(config: Config | None) -> Iterator[Store]:
    """The store `config` names (the default one without a file), migrated, closed on the way out."""
    from .store.db import Store

    store = Store(config.store.url, path=config.store.path) if config is not None else Store()
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def user_command(args: argparse.Namespace) -> int:
    """`hatif user add NAME --role R` and `hatif user list`, on the store the configuration names."""
    from .people import PeopleService, PeopleStore  # argon2 and SQLAlchemy: only `hatif user` pays for them
    from .store.configrows import ConfigRows

    verb = f"hatif user {args.user_verb}"
    config: Config | None = None
    if args.config is not None:
        config = _load(args.config)
        if config is None:
            return 2
    try:
        tenant = _user_tenant(args, config)
        tenants = None if config is None else [t.name for t in config.tenants]
        with _migrated_store(config) as store:
            stored = list(dict.fromkeys(o.tenant for o in ConfigRows(store).objects()))
            people = PeopleService(PeopleStore(store.engine), tenants=stored or tenants)  # the store's, once any
            if args.user_verb == "add":
                password = read_password()
                person = people.add_user(tenant, args.name, args.role, password)
                sys.stdout.write(f"added {person.role.value} {person.name!r} to tenant {person.tenant!r} "
                                 f"(user {person.id})\n")
            else:
                for person in people.users(tenant):
                    state = " (disabled)" if person.disabled else ""
                    sys.stdout.write(f"{person.id}\t{person.name}\t{person.role.value}{state}\n")
    except (HatifError, OSError) as e:
        sys.stderr.write(f"{verb}: {e}\n")
        return 1
    return 0


def config_command(args: argparse.Namespace) -> int:
    """`hatif config export [--tenant T]` and `hatif config import FILE`, on the store the boot file names.

    An import is validated as `check-config` validates FILE (its problems are `FILE:line: field: reason`), then
    with the boot file and the store's other tenants (`FILE: tenants[i]...: reason`); nothing is written unless
    all of it is valid. A running center applies it at its next restart or configuration change."""
    import yaml

    from .center import export_center, import_center
    from .store.configrows import ConfigRows

    verb = f"hatif config {args.config_verb}"
    boot: Config | None = None
    if args.config is not None:
        boot = _load(args.config)
        if boot is None:
            return 2
    center: Config | None = None
    if args.config_verb == "import":
        center = _load(args.file)
        if center is None:
            return 2
    try:
        with _migrated_store(boot) as store:
            rows = ConfigRows(store)
            if center is not None:
                written = import_center(boot if boot is not None else center, rows, center)
                sys.stdout.write(f"imported tenants {', '.join(written)} from {args.file}\n")
            else:
                data = export_center(rows, args.tenant)
                sys.stdout.write(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    except ConfigError as e:
        where = f"{args.file}: " if args.config_verb == "import" else f"{verb}: "
        sys.stderr.write("".join(f"{where}{message}\n" for message in e.messages))
        return 2
    except (HatifError, OSError) as e:
        sys.stderr.write(f"{verb}: {e}\n")
        return 1
    return 0


def serve(path: Path, listen: tuple[ListenAddress, ...] | None = None, log_format: str | None = None,
          log_level: str | None = None, demo: bool = False, quiet: bool = False) -> int:
    """Load and validate `path`, set up logging, warn about demo passwords, then run until stopped."""
    config = _load(path)
    if config is None:
        return 2
    if listen:
        config = config.with_listen(listen)
    fmt: Literal["plain", "json"] = "json" if (log_format or config.logging.format) == "json" else "plain"
    # The demo's board redraws itself in place on a terminal: the log then goes to a file the board names,
    # so the two never interleave. Anywhere else (a pipe, a service manager) both stay plain lines.
    board: Path | None = None
    if demo and not quiet and sys.stdout.isatty():
        board = Path(config.store.path).parent / "hatif-demo.log"
        board.parent.mkdir(parents=True, exist_ok=True)
        setup_logging(log_level or config.logging.level, fmt,
                      stream=board.open("a", encoding="utf-8", buffering=1))
        sys.stdout.write(f"Hatif demo starting; the log goes to {board}\n")
    else:
        setup_logging(log_level or config.logging.level, fmt)
    weak = config.demo_credentials_in_use()
    if weak:
        log.warning("demo credentials in use: anyone who knows them can register and call; change these passwords",
                    extra={"fields": {"users": ",".join(weak), "config": str(path)}})
    log.info("configuration loaded", extra={"fields": {
        "config": str(path), "tenants": len(config.tenants), "listen": " ".join(str(a) for a in config.sip.listen)}})
    from hatif import app  # the wiring imports every subsystem: only `serve` and `demo` pay for it

    try:
        if board is not None:
            return app.run(config, demo=demo, quiet=quiet, log_file=board)
        return app.run(config, demo=demo, quiet=quiet)
    except KeyboardInterrupt:
        return 130
    except (OSError, HatifError) as e:  # a port taken, the database or the broker unreachable: named, no trace
        log.error("cannot start", extra={"fields": {"error": str(e)}})
        return 1


if __name__ == "__main__":
    sys.exit(main())

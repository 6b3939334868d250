"""Hatif's configuration: one YAML file, validated in full before anything starts.

The file is composed with PyYAML's node API so that every mapping key and sequence item keeps its line;
the data is then validated by frozen pydantic models, and each pydantic error's `loc` is mapped back to a
line. A configuration error therefore names the file, the line and the field, and all errors are reported
at once, in file order::

    examples/bad.yaml:14: tenants[0].users[2].password: field required
    examples/bad.yaml:21: tenants[0].dialplan[1].match: invalid regular expression '^1(\\d{3}$': ...

Checks that relate several entries (duplicate usernames or extensions, dial-plan targets that must exist,
domains claimed by two tenants) run once the entries themselves are valid, so a file with both kinds of
mistakes shows the second kind after the first is fixed.

Sections: `sip` (listen addresses, RFC 3261 timers, registration bounds, limits), `security` (bans,
nonces), `media` (RTP ports, recording, greetings), `logging`, and `tenants` (each with its domains, users,
trusted endpoints and dial plan). Unknown keys are errors, so a misspelt option never silently falls back
to its default.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import __version__
from .acd.settings import DEFAULT_REASONS, AgentSettings, QueueSettings
from .calls.dialplan import DialPlan, RoutingRule
from .calls.dialplan import Route as Route
from .errors import ConfigError as ConfigError  # re-exported: `hatif.config.ConfigError` stays its name
from .ivr.model import Flow
from .ivr.rules import NumberList, Schedule, TimeZoneName
from .ivr.validate import KnownTargets, flow_problems
from .voicemail.model import Mailbox, VoicemailSettings

DEMO_PASSWORD = "hatif-demo"
"""The password of the shipped demo users; the server warns at start while any user still has it."""

DEFAULT_TENANT = "default"
"""The tenant that answers for IP literals and for hosts no tenant claims (the server's own addresses)."""

APPLICATIONS = frozenset({"echo", "greeting", "conference", "flow", "voicemail", "check-voicemail", "queue",
                          "agent"})
"""Applications Hatif runs on calls it answers (registered with `hatif.calls.control`): the echo test, a spoken
greeting, a conference room (`app:conference:ROOM`), an IVR flow (`flow:NAME`), leaving a voicemail
(`voicemail:MAILBOX`), the mailbox owner's menu (`app:check-voicemail`), a queue (`queue:NAME`) and the agents'
feature codes (`app:agent:login`, `app:agent:logout`, `app:agent:ready`, `app:agent:pause:REASON`)."""
ARGUMENT_TARGETS = frozenset({"flow", "voicemail", "queue", "conference"})
"""Dial-plan targets written `KIND:NAME` that run an application on the named flow, mailbox, queue or room."""

Transport = Literal["udp", "tcp"]
DigestAlgorithm = Literal["MD5", "SHA-256"]
Srtp = Literal["off", "optional", "mandatory"]
Language = Literal["en", "ar", "fa"]
Loc = tuple[str | int, ...]

_TRANSPORTS: dict[str, Transport] = {"udp": "udp", "tcp": "tcp"}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # RFC 3261 §25.1 `user` chars, a safe subset
_DIGITS = re.compile(r"[0-9]{1,32}")
_TEMPLATE_TOKEN = re.compile(r"\\(?:g<([^>]*)>|([0-9]{1,2})|(.?))", re.DOTALL)
_TEMPLATE_ESCAPES = frozenset("abfnrtv\\")
_PROBLEMS = "config_problems"


def _problems(problems: list[tuple[Loc, str]]) -> PydanticCustomError:
    """Several problems found by one model validator, each at a path below the model (expanded later)."""
    summary = "; ".join(f"{_dotted(loc)}: {msg}" if loc else msg for loc, msg in problems)
    return PydanticCustomError(_PROBLEMS, "{summary}", {"summary": summary, "problems": problems})


# -- scalar types ----------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    """`text` in single quotes as the user wrote it (no doubled backslashes), or its repr if it needs escapes."""
    if "'" in text or any(not c.isprintable() for c in text):
        return repr(text)
    return f"'{text}'"


def _no_controls(value: str, what: str) -> str:
    """Refuse CR, LF and other control characters: these strings end up in SIP headers and log lines."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} must not contain control characters (such as line breaks)")
    return value


def parse_host(text: str) -> str:
    """An IP literal (IPv6 without its brackets, in canonical form) or a DNS name (lower case)."""
    value = text.strip()
    bracketed = value.startswith("[") and value.endswith("]")
    if bracketed:
        value = value[1:-1]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is not None:
        if bracketed and address.version != 6:
            raise ValueError(f"{text!r}: only IPv6 addresses go in brackets")
        return str(address)
    last_label = value.rstrip(".").rsplit(".", 1)[-1]
    if bracketed or not _HOSTNAME.fullmatch(value) or len(value) > 253 or last_label.isdigit():
        raise ValueError(f"{text!r} is not a host name or an IP address")
    return value.lower().rstrip(".")


def parse_host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT`, with IPv6 hosts in brackets (`[::1]:5060`); port 0 means any free port.

    Errors do not repeat `text`: the caller says where it came from.
    """
    value = text.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1 : end + 2] != ":":
            raise ValueError("expected [IPV6]:PORT, e.g. [::1]:5060")
        host_text, port_text = value[: end + 1], value[end + 2 :]
    else:
        host_text, sep, port_text = value.rpartition(":")
        if not sep or not host_text:
            raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:5060")
        if ":" in host_text:
            raise ValueError("an IPv6 address goes in brackets, e.g. [::1]:5060")
    if not _DIGITS.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"the port {port_text!r} is not a number from 0 to 65535")
    return parse_host(host_text), int(port_text)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One SIP listener, written `udp:HOST:PORT` or `tcp:HOST:PORT` (RFC 3261 §18: UDP and TCP)."""

    transport: Transport
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        name, sep, rest = text.strip().partition(":")
        if not sep:
            raise ValueError(f"{text!r}: expected TRANSPORT:HOST:PORT, e.g. udp:0.0.0.0:5060")
        transport = _TRANSPORTS.get(name.lower())
        if transport is None:
            raise ValueError(f"{text!r}: unsupported transport {name!r} (expected udp or tcp)")
        try:
            host, port = parse_host_port(rest)
        except ValueError as e:
            raise ValueError(f"{text!r}: {e}") from None
        return cls(transport, host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def _listen(value: object) -> ListenAddress:
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a string like 'udp:0.0.0.0:5060'")
    return ListenAddress.parse(value)


@dataclass(frozen=True, slots=True)
class DialTarget:
    """Where a dial-plan rule sends a call: `user:NAME`, `extension`, `endpoint:NAME` or `app:NAME`.

    `extension` means the user whose extension is the (rewritten) dialed number.
    """

    kind: Literal["user", "extension", "endpoint", "app"]
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> DialTarget:
        kind, sep, name = text.strip().partition(":")
        if kind == "extension" and not sep:
            return cls("extension")
        if sep and name:
            if kind == "user":
                return cls("user", name)
            if kind == "endpoint":
                return cls("endpoint", name)
            if kind == "app":
                base = name.partition(":")[0]
                if base not in APPLICATIONS:
                    raise ValueError(f"unknown application {name!r} (known: {', '.join(sorted(APPLICATIONS))})")
                return cls("app", name)
            if kind in ARGUMENT_TARGETS:
                return cls("app", f"{kind}:{name}")
        raise ValueError(f"{text!r}: expected 'user:NAME', 'extension', 'endpoint:NAME', 'flow:NAME', "
                         "'voicemail:MAILBOX', 'queue:NAME' or 'app:NAME'")

    def __str__(self) -> str:
        return self.kind if self.kind == "extension" else f"{self.kind}:{self.name}"


def _dial_target(value: object) -> DialTarget:
    if isinstance(value, DialTarget):
        return value
    if not isinstance(value, str):
        raise ValueError("expected 'user:NAME', 'extension', 'endpoint:NAME' or 'app:NAME'")
    return DialTarget.parse(value)


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"{value!r}: a name is lower-case letters, digits and inner dashes (up to 63)")
    return value


def _username(value: str) -> str:
    if not _USERNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a username: letters, digits and . _ + - (up to 64, no leading sign)")
    return value


def _extension(value: str | None) -> str | None:
    if value is not None and not _DIGITS.fullmatch(value):
        raise ValueError(f"{value!r} is not an extension: digits 0-9 only")
    return value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _algorithms(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(value)) != len(value):
        raise ValueError(f"an algorithm is listed twice in {list(value)}")
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


Listen = Annotated[ListenAddress, PlainValidator(_listen), PlainSerializer(str)]
Ha1 = Annotated[str, Field(pattern=r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{64})$"), AfterValidator(str.lower)]
DigestAlgorithms = Annotated[tuple[Annotated[DigestAlgorithm, BeforeValidator(_upper)], ...],
                             Field(min_length=1), AfterValidator(_algorithms)]
Host = Annotated[str, AfterValidator(parse_host)]
Slug = Annotated[str, AfterValidator(_slug)]
Target = Annotated[DialTarget, PlainValidator(_dial_target), PlainSerializer(str)]


def _check_template(template: str, pattern: re.Pattern[str]) -> str | None:
    """Why `template` cannot be expanded by a match of `pattern` (`re.Match.expand` rules), or None."""
    for m in _TEMPLATE_TOKEN.finditer(template):
        name, number, other = m.groups()
        if name is not None:
            if name.isdigit():
                if int(name) > pattern.groups:
                    return f"refers to group {name}, but the pattern has {pattern.groups}"
            elif name not in pattern.groupindex:
                return f"refers to group {name!r}, which the pattern does not define"
        elif number is not None:
            if int(number) > pattern.groups:
                return f"refers to group {number}, but the pattern has {pattern.groups}"
        elif other is not None and other not in _TEMPLATE_ESCAPES:
            return f"bad escape '\\{other}' (write '\\\\' for a backslash)"
    return None


# -- sections --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


class Registration(_Model):
    """REGISTER expiry bounds (RFC 3261 §10.3 step 7: below `min_expires` answers 423) and contacts per user."""

    min_expires: int = Field(default=60, ge=1)
    max_expires: int = Field(default=3600, ge=1)
    default_expires: int = Field(default=3600, ge=1)
    max_contacts_per_user: int = Field(default=5, ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Registration:
        if self.min_expires > self.max_expires:
            raise _problems([(("min_expires",), f"{self.min_expires} exceeds max_expires ({self.max_expires})")])
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise _problems([(("default_expires",), f"must lie between min_expires ({self.min_expires}) "
                                                    f"and max_expires ({self.max_expires})")])
        return self


class Limits(_Model):
    """Bounds on everything a peer can make the server hold (SECURITY.md: bounded everything)."""

    max_message_size: int = Field(default=65535, ge=1024, le=16 * 1024 * 1024)
    max_headers: int = Field(default=128, ge=16)
    max_transactions: int = Field(default=100_000, ge=1)
    max_dialogs: int = Field(default=50_000, ge=1)


class SipTimers(_Model):
    """RFC 3261 §17.1.1.1 and Table 4 base timers in seconds; `d` is Timer D's floor (§17.1.1.2: 32 s)."""

    t1: float = Field(default=0.5, gt=0)
    t2: float = Field(default=4.0, gt=0)
    t4: float = Field(default=5.0, gt=0)
    d: float = Field(default=32.0, ge=0)

    @model_validator(mode="after")
    def _t2_not_below_t1(self) -> SipTimers:
        if self.t2 < self.t1:
            raise _problems([(("t2",), f"T2 ({self.t2}) must not be shorter than T1 ({self.t1})")])
        return self


class AdmissionLimits(_Model):
    """Admission control of new calls (`hatif.sip.admission`): a new INVITE that waited longer than
    `max_queue_delay` seconds unread in the socket while the delay has stayed past it for `late_for` seconds
    (the server is behind, not just paused a moment), or that finds `max_setups` calls
    being set up, gets `503` with `Retry-After: retry_after` before any call state or media port exists."""

    max_queue_delay: float = Field(default=0.2, gt=0, le=30)
    late_for: float = Field(default=0.1, ge=0, le=30)
    max_setups: int = Field(default=1000, ge=1)
    retry_after: int = Field(default=5, ge=0, le=3600)


def _default_listen() -> tuple[ListenAddress, ...]:
    return (ListenAddress("udp", "0.0.0.0", 5060), ListenAddress("tcp", "0.0.0.0", 5060))


class Sip(_Model):
    """The SIP server: where it listens, what it advertises in Via/Contact/Record-Route, its timers."""

    listen: tuple[Listen, ...] = Field(default_factory=_default_listen, min_length=1)
    advertise: Host | None = None
    ring_timeout: float = Field(default=30.0, gt=0)
    user_agent: str = Field(default_factory=lambda: f"Hatif/{__version__}", min_length=1, max_length=200)
    registration: Registration = Registration()
    limits: Limits = Limits()
    timers: SipTimers = SipTimers()
    admission: AdmissionLimits = AdmissionLimits()
    drain_seconds: float = Field(default=60.0, ge=0)
    """On SIGTERM, how long live calls may go on before Hatif ends them (BYE, CDR) and exits."""
    session_expires: int = Field(default=1800, ge=1)
    """RFC 4028 session interval Hatif asks for and uses when the caller asks none (seconds)."""
    min_se: int = Field(default=90, ge=1)
    """The smallest session interval accepted (RFC 4028: 90 s); below gets 422. Lower only for tests."""

    @field_validator("user_agent")
    @classmethod
    def _header_safe(cls, value: str) -> str:
        return _no_controls(value, "the User-Agent")

    @model_validator(mode="after")
    def _distinct(self) -> Sip:
        seen: dict[ListenAddress, int] = {}
        problems: list[tuple[Loc, str]] = []
        for i, address in enumerate(self.listen):
            if address in seen:
                problems.append((("listen", i), f"{address} is listed twice (first at listen[{seen[address]}])"))
            seen.setdefault(address, i)
        if self.session_expires < self.min_se:
            problems.append((("session_expires",), f"{self.session_expires} is below min_se ({self.min_se})"))
        if problems:
            raise _problems(problems)
        return self


class Security(_Model):
    """Bans for failed authentication and floods, and digest nonces (RFC 8760 / RFC 7616 §3.3)."""

    auth_failure_limit: int = Field(default=10, ge=1)
    auth_failure_window: float = Field(default=60.0, gt=0)
    flood_limit: int = Field(default=16, ge=1)
    flood_window: float = Field(default=2.0, gt=0)
    ban_time: float = Field(default=300.0, ge=0)
    nonce_lifetime: float = Field(default=300.0, gt=0)
    secret: str | None = Field(default=None, min_length=16, repr=False)
    """Key for nonces; when absent the server draws a random one at start (nonces then die with it)."""
    digest_algorithms: DigestAlgorithms = ("MD5",)
    """The digest algorithms challenged, in order (RFC 8760 §2.4), unless a tenant or user says otherwise. MD5
    alone by default, as Asterisk and Kamailio do: SIPp, SIP.js, JsSIP and baresip 1.0 answer only MD5 or read
    only the first challenge. Add SHA-256 (first) where every phone of the tenant or user speaks it."""
    user_request_rate: float = Field(default=250.0, gt=0)
    """Requests per second one authenticated user may send on average (an office behind one NAT, an SBC);
    beyond it (and past `user_request_burst`) requests get 503 with Retry-After, never a ban."""
    user_request_burst: int = Field(default=500, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "md5_only_user_agents" in data:
            raise _problems([(("md5_only_user_agents",), "removed: a User-Agent proves nothing; every client now "
                                                         "gets `digest_algorithms` (MD5 by default)")])
        return data


class Media(_Model):
    """RTP: the address and port range of Hatif's legs, recording, and the greeting application's text."""

    host: Host = "127.0.0.1"
    advertise: Host | None = None
    port_min: int = Field(default=20000, ge=1024, le=65535)
    port_max: int = Field(default=30000, ge=1024, le=65535)
    record: bool = False
    recordings: Path = Path("var/recordings")
    cache: Path = Path("var/cache/prompts")
    latch_packets: int = Field(default=4, ge=2, le=50)
    """In-sequence packets a new source must send before a leg takes it (SECURITY.md "RTP")."""
    latch_silence: float = Field(default=0.5, gt=0, le=10)
    """Seconds the latched source must have been silent before another may take its place."""
    latch_window: float = Field(default=5.0, gt=0, le=60)
    """Seconds after the answer in which symmetric RTP may learn a source the SDP does not name."""
    greeting: dict[Language, str] = Field(default_factory=dict)
    rtp_timeout: float = Field(default=30.0, ge=0)
    """Seconds without RTP on an answered leg (not on hold) before Hatif ends the call; 0 turns it off."""

    @model_validator(mode="after")
    def _range(self) -> Media:
        if self.port_max - self.port_min < 2:
            raise _problems([(("port_max",), f"the RTP port range {self.port_min}-{self.port_max} "
                                             "must hold at least one even/odd pair")])
        return self


class StoreSettings(_Model):
    """Where Hatif keeps its records: a SQLite file by default, or a database URL (PostgreSQL)."""

    url: str | None = Field(default=None, repr=False)
    """A SQLAlchemy URL such as `postgresql+psycopg://hatif@127.0.0.1:5432/hatif`; `path` is used when absent."""
    path: Path = Path("var/hatif.db")
    journal: Path | None = None
    """The journal of open calls (CDRs for calls up at a crash); next to `path` when absent."""
    linger: float = Field(default=0.02, ge=0, le=1)
    """Seconds a record waits for others to share its transaction; a BYE's 200 waits for the commit."""

    @property
    def journal_path(self) -> Path:
        return self.journal if self.journal is not None else self.path.parent / "open-calls.journal"


class BusSettings(_Model):
    """The event bus across processes: several `hatif serve` sharing one database (PostgreSQL) share their events
    through NATS JetStream at `url`; absent, the bus stays in this process."""

    url: str | None = Field(default=None, pattern=r"^(nats|tls)://[^\s/]+$")
    """e.g. `nats://127.0.0.1:4222`."""
    space: str = Field(default="hatif", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """The installation's name on the broker (subjects `<space>.ev.>`, stream `<SPACE>_EVENTS`)."""


class ApiToken(_Model):
    token: str = Field(min_length=16, repr=False)
    tenant: Slug


class ApiSettings(_Model):
    """The HTTP API: where it listens (none: off) and the bearer tokens, each for one tenant."""

    listen: str | None = None
    tokens: tuple[ApiToken, ...] = ()

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value)
        return value


class LoggingSettings(_Model):
    """Log threshold and line format (`plain` for people, `json` for collectors); see `hatif.log`."""

    level: Annotated[Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)] = "info"
    format: Annotated[Literal["plain", "json"], BeforeValidator(_lower)] = "plain"


class User(_Model):
    """A person with a SIP account; `extension` defaults to a numeric username."""

    username: Annotated[str, AfterValidator(_username)]
    extension: Annotated[str | None, AfterValidator(_extension)] = None
    password: str | None = Field(default=None, min_length=8, max_length=256, repr=False)
    """The SIP password; Hatif keeps only its HA1 hashes (RFC 7616 §3.4.2) once the file is read."""
    ha1: dict[Annotated[DigestAlgorithm, BeforeValidator(_upper)], Ha1] | None = Field(default=None, repr=False)
    """Instead of `password`: the HA1 per algorithm, H(username:realm:password) in hex, realm being the tenant's
    first domain (else its name), e.g. `printf '1001:hatif.local:secret' | md5sum` for MD5."""
    digest_algorithms: DigestAlgorithms | None = None
    """This user's digest algorithms, in challenge order (the tenant's when absent)."""
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    language: Annotated[Language, BeforeValidator(_lower)] = "en"
    symmetric_rtp: bool = True
    """Phones sit behind NAT: latch onto the address their RTP comes from (see `Media.latch_*`)."""
    srtp: Annotated[Srtp, BeforeValidator(_lower)] = "off"
    """SRTP (SDES, RFC 4568) in the offers Hatif sends this user; an SRTP offer from the phone is always taken."""

    @model_validator(mode="after")
    def _a_secret(self) -> User:
        if self.password is None and self.ha1 is None:
            raise _problems([(("password",), "field required")])
        if self.password is not None and self.ha1 is not None:
            raise _problems([(("ha1",), "give a password or the ha1 hashes, not both")])
        return self

    @model_validator(mode="before")
    @classmethod
    def _extension_from_username(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("extension") is None:
            username = data.get("username")
            if isinstance(username, int | str) and _DIGITS.fullmatch(str(username)):
                return {**data, "extension": str(username)}
        return data

    @field_validator("display_name")
    @classmethod
    def _header_safe(cls, value: str | None) -> str | None:
        return None if value is None else _no_controls(value, "a display name")


class Endpoint(_Model):
    """A static peer (trunk, test tool); when `trusted`, calls from host:port are taken without auth."""

    name: Slug
    host: Host
    port: int = Field(default=5060, ge=1, le=65535)
    transport: Annotated[Transport, BeforeValidator(_lower)] = "udp"
    trusted: bool = True
    symmetric_rtp: bool = False
    """Off: RTP is taken only from the address and port the endpoint's SDP names (a trunk sends from there)."""
    srtp: Annotated[Srtp, BeforeValidator(_lower)] = "off"
    """SRTP (SDES, RFC 4568) in the offers Hatif sends: `mandatory` offers RTP/SAVP, `optional` RTP/AVP with
    `a=crypto` (best effort), `off` plain RTP; an SRTP offer from the endpoint is always taken."""

    @model_validator(mode="after")
    def _trusted_by_address(self) -> Endpoint:
        if self.trusted and not _is_ip(self.host):
            raise _problems([(("host",), f"{self.host!r}: a trusted endpoint is recognised by its source address, "
                                         "so its host must be an IP address")])
        return self


class DialRule(_Model):
    """One dial-plan rule: the first whose regex matches (`re.search`) and whose target exists wins."""

    match: re.Pattern[str]
    to: Target
    rewrite: str | None = None
    """Replacement template for the dialed number, with `\\1` or `\\g<name>` for groups of `match`."""

    @field_validator("match", mode="before")
    @classmethod
    def _compile(cls, value: object) -> object:
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, str):
            try:
                return re.compile(value)
            except re.error as e:
                raise ValueError(f"invalid regular expression {_quote(value)}: {e.msg} at position {e.pos}") from None
        return value

    @model_validator(mode="after")
    def _rewrite_fits(self) -> DialRule:
        if self.rewrite is not None:
            problem = _check_template(self.rewrite, self.match)
            if problem is not None:
                raise _problems([(("rewrite",), f"{_quote(self.rewrite)} {problem}")])
        return self


class Tenant(_Model):
    """A company on this installation: its SIP domains, users, trusted endpoints and dial plan."""

    name: Slug
    domains: tuple[Host, ...] = ()
    users: tuple[User, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    dialplan: tuple[DialRule, ...] = ()
    timezone: TimeZoneName = "UTC"
    """The tenant's IANA time zone (business hours, times spoken in voicemail), e.g. Asia/Riyadh."""
    mailboxes: tuple[Mailbox, ...] = ()
    flows: dict[str, Flow] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    lists: dict[str, NumberList] = Field(default_factory=dict)
    queues: tuple[QueueSettings, ...] = ()
    agents: tuple[AgentSettings, ...] = ()
    not_ready_reasons: tuple[Annotated[str, Field(min_length=1, max_length=40)], ...] = DEFAULT_REASONS
    """Why an agent is not ready (break, lunch, ...): the codes agents choose from and reports group by."""
    require_reason: bool = False
    """An agent (or supervisor) making an agent not ready must give one of `not_ready_reasons`."""
    missed_in_a_row: int = Field(default=1, ge=1, le=100)
    """Offers an agent may let ring out in a row before the ACD makes it not ready (reason `missed`)."""
    digest_algorithms: DigestAlgorithms | None = None
    """The tenant's digest algorithms, in challenge order (`security.digest_algorithms` when absent)."""
    max_call_seconds: float | None = Field(default=None, gt=0)
    """The longest a call of this tenant may last before Hatif ends it (BYE, cause max_duration); none: no limit."""

    _by_extension: dict[str, User] = PrivateAttr(default_factory=dict)
    _dial_plan: DialPlan = PrivateAttr(default_factory=DialPlan)

    def model_post_init(self, context: Any, /) -> None:
        self._by_extension = {}
        for user in self.users:
            if user.extension is not None:
                self._by_extension.setdefault(user.extension, user)
        rules = tuple(RoutingRule(r.match, r.to.kind, r.to.name, r.rewrite) for r in self.dialplan)
        self._dial_plan = DialPlan(rules, MappingProxyType({e: u.username for e, u in self._by_extension.items()}))

    @model_validator(mode="after")
    def _consistent(self) -> Tenant:
        problems: list[tuple[Loc, str]] = []
        problems += _duplicates("domains", [(i, d) for i, d in enumerate(self.domains)], "domain")
        problems += _duplicates("users", [(i, u.username) for i, u in enumerate(self.users)], "username",
                                "username")
        problems += _duplicates("users", [(i, u.extension) for i, u in enumerate(self.users) if u.extension],
                                "extension", "extension")
        problems += _duplicates("endpoints", [(i, e.name) for i, e in enumerate(self.endpoints)], "endpoint name",
                                "name")
        problems += _duplicates("mailboxes", [(i, m.name) for i, m in enumerate(self.mailboxes)], "mailbox name",
                                "name")
        usernames = {u.username for u in self.users}
        endpoints = {e.name for e in self.endpoints}
        mailboxes = {m.name for m in self.mailboxes}
        for i, box in enumerate(self.mailboxes):
            for who in (box.owner, *(box.notify or ())):
                if who is not None and who not in usernames:
                    problems.append((("mailboxes", i), f"no user {who!r} in tenant {self.name!r}"))
        for i, rule in enumerate(self.dialplan):
            target = rule.to
            if target.kind == "user" and target.name not in usernames:
                problems.append((("dialplan", i, "to"), f"no user {target.name!r} in tenant {self.name!r}"))
            elif target.kind == "endpoint" and target.name not in endpoints:
                problems.append((("dialplan", i, "to"), f"no endpoint {target.name!r} in tenant {self.name!r}"))
            elif target.kind == "app":
                kind, _, name = target.name.partition(":")
                if kind == "flow" and name not in self.flows:
                    problems.append((("dialplan", i, "to"), f"no flow {name!r} in tenant {self.name!r}"))
                elif kind == "voicemail" and name not in mailboxes:
                    problems.append((("dialplan", i, "to"), f"no mailbox {name!r} in tenant {self.name!r}"))
        queues = {q.name for q in self.queues}
        problems += _duplicates("queues", [(i, q.name) for i, q in enumerate(self.queues)], "queue name", "name")
        problems += _duplicates("agents", [(i, a.user) for i, a in enumerate(self.agents)], "agent", "user")
        for i, q in enumerate(self.queues):
            if q.mailbox is not None and q.mailbox not in mailboxes:
                problems.append((("queues", i, "mailbox"), f"no mailbox {q.mailbox!r} in tenant {self.name!r}"))
            if q.vip_list is not None and q.vip_list not in self.lists:
                problems.append((("queues", i, "vip_list"), f"no list {q.vip_list!r} in tenant {self.name!r}"))
            for j, step in enumerate(q.overflow):
                if step.queue is not None and (step.queue not in queues or step.queue == q.name):
                    problems.append((("queues", i, "overflow", j, "queue"),
                                     f"{step.queue!r} is not another queue of tenant {self.name!r}"))
                if step.voicemail and q.mailbox is None:
                    problems.append((("queues", i, "overflow", j, "voicemail"), "the queue has no mailbox"))
        if self.require_reason and not self.not_ready_reasons:
            problems.append((("require_reason",), "require_reason needs at least one code in not_ready_reasons"))
        for i, rule in enumerate(self.dialplan):
            if self.require_reason and rule.to.kind == "app" and rule.to.name in ("agent:pause", "agent:pause:"):
                problems.append((("dialplan", i, "to"), "the tenant has require_reason: write app:agent:pause:REASON "
                                                        f"with one of {', '.join(self.not_ready_reasons)}"))
            if rule.to.kind == "app" and rule.to.name.startswith("agent:pause:"):
                reason = rule.to.name.split(":", 2)[2]
                if reason not in self.not_ready_reasons:
                    problems.append((("dialplan", i, "to"), f"{reason!r} is not one of the not_ready_reasons "
                                                            f"({', '.join(self.not_ready_reasons)})"))
        for i, a in enumerate(self.agents):
            if a.device is not None and not a.device.startswith("endpoint:") and self.route(a.device) is None:
                problems.append((("agents", i, "device"), f"the dial plan does not route {a.device!r}"))
            if a.user not in usernames:
                problems.append((("agents", i, "user"), f"no user {a.user!r} in tenant {self.name!r}"))
            for j, m in enumerate(a.queues):
                if m.queue not in queues:
                    problems.append((("agents", i, "queues", j), f"no queue {m.queue!r} in tenant {self.name!r}"))
        for i, rule in enumerate(self.dialplan):
            kind, _, name = rule.to.name.partition(":") if rule.to.kind == "app" else ("", "", "")
            if kind == "queue" and name not in queues:
                problems.append((("dialplan", i, "to"), f"no queue {name!r} in tenant {self.name!r}"))
        known = KnownTargets(
            users=frozenset(usernames), extensions=frozenset(u.extension for u in self.users if u.extension),
            queues=frozenset(queues), mailboxes=frozenset(mailboxes), endpoints=frozenset(endpoints),
            schedules=frozenset(self.schedules), lists=frozenset(self.lists),
            dialable=lambda number: (r := self.route(number)) is not None and r.kind == "endpoint")
        problems += flow_problems(self.flows, known)
        if problems:
            raise _problems(problems)
        return self

    def user(self, username: str) -> User | None:
        return next((u for u in self.users if u.username == username), None)

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def route(self, number: str) -> Route | None:
        """Resolve a dialed number through the tenant's dial plan (`hatif.calls.dialplan`)."""
        return self._dial_plan.route(number)

    @property
    def dial_plan(self) -> DialPlan:
        """The tenant's frozen routing settings, for call control."""
        return self._dial_plan


def _duplicates(section: str, items: list[tuple[int, str]], what: str,
                field: str | None = None) -> list[tuple[Loc, str]]:
    first: dict[str, int] = {}
    problems: list[tuple[Loc, str]] = []
    for i, value in items:
        if value in first:
            loc: Loc = (section, i, field) if field else (section, i)
            problems.append((loc, f"duplicate {what} {value!r} (first at {section}[{first[value]}])"))
        first.setdefault(value, i)
    return problems


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Config(_Model):
    """The whole configuration; build it with `load_config` or `parse_config`."""

    sip: Sip = Sip()
    security: Security = Security()
    media: Media = Media()
    logging: LoggingSettings = LoggingSettings()
    store: StoreSettings = StoreSettings()
    api: ApiSettings = ApiSettings()
    bus: BusSettings = BusSettings()
    voicemail: VoicemailSettings = VoicemailSettings()
    tenants: tuple[Tenant, ...] = Field(min_length=1)

    _by_domain: dict[str, Tenant] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._by_domain = {}
        for tenant in self.tenants:
            for domain in tenant.domains:
                self._by_domain.setdefault(domain, tenant)

    @model_validator(mode="after")
    def _tenants_apart(self) -> Config:
        problems = _duplicates("tenants", [(i, t.name) for i, t in enumerate(self.tenants)], "tenant name", "name")
        names = {t.name for t in self.tenants}
        for i, token in enumerate(self.api.tokens):
            if token.tenant not in names:
                problems.append((("api", "tokens", i, "tenant"), f"no tenant {token.tenant!r}"))
        for i, tenant in enumerate(self.tenants):
            for j, user in enumerate(tenant.users):
                given = user.ha1
                missing = [a for a in self.digest_algorithms(tenant, user) if given is not None and a not in given]
                if missing:
                    problems.append((("tenants", i, "users", j, "ha1"),
                                     f"no HA1 for {', '.join(missing)}, which this user is challenged with"))
        owner: dict[str, int] = {}
        for i, tenant in enumerate(self.tenants):
            for j, domain in enumerate(tenant.domains):
                if domain in owner and owner[domain] != i:
                    other = self.tenants[owner[domain]].name
                    problems.append((("tenants", i, "domains", j),
                                     f"domain {domain!r} already belongs to tenant {other!r}"))
                owner.setdefault(domain, i)
        if problems:
            raise _problems(problems)
        return self

    def tenant(self, name: str) -> Tenant | None:
        return next((t for t in self.tenants if t.name == name), None)

    def tenant_for_domain(self, host: str) -> Tenant | None:
        """The tenant serving a request-URI or To host; unclaimed hosts and IPs go to the `default` tenant."""
        key = host.strip().strip("[]").rstrip(".").lower()
        tenant = self._by_domain.get(key)
        return tenant if tenant is not None else self.tenant(DEFAULT_TENANT)

    def demo_credentials_in_use(self) -> list[str]:
        """Usernames whose password is still the shipped demo password (`hatif-demo`)."""
        return [u.username for t in self.tenants for u in t.users if u.password == DEMO_PASSWORD]

    def digest_algorithms(self, tenant: Tenant, user: User | None) -> tuple[str, ...]:
        """The algorithms challenged for `user` of `tenant` (an unknown user gets the tenant's)."""
        if user is not None and user.digest_algorithms is not None:
            return user.digest_algorithms
        return tenant.digest_algorithms or self.security.digest_algorithms

    def with_listen(self, addresses: tuple[ListenAddress, ...]) -> Config:
        """This configuration with `sip.listen` replaced (the command line's `--sip`)."""
        if not addresses:
            raise ValueError("at least one listen address is needed")
        return self.model_copy(update={"sip": self.sip.model_copy(update={"listen": tuple(addresses)})})


# -- loading and error locations ---------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and validate a configuration file; raises `ConfigError` naming file, line and field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: no such file"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{p}: not UTF-8 text (invalid byte at offset {e.start})"]) from None
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror or e}"]) from None
    return parse_config(text, str(p))


def parse_config(text: str, source: str = "<string>") -> Config:
    """Validate configuration text; `source` names it in error messages."""
    data, lines, found = _compose(text, source)
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        found += _locate_errors(e, data, lines)
        config = None
    if found or config is None:
        found.sort(key=lambda item: item[0])
        raise ConfigError([f"{source}:{line}: {msg}" for line, msg in found])
    return config


def validate_data(data: dict[str, Any]) -> Config:
    """Validate configuration data that comes from no file (the store's rows, `hatif.center`) by the same models
    and cross-checks as `parse_config`; a `ConfigError`'s messages are `parse_config`'s without `file:line: `
    (`tenants[0].flows.main.nodes.x.next: no node 'y'`). Sections may be given as validated models."""
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError([msg for _, msg in _locate_errors(e, data, {})]) from None


def _compose(text: str, source: str) -> tuple[dict[str, Any], dict[Loc, int], list[tuple[int, str]]]:
    """The YAML document as data, the line of every key and item in it, and its duplicate keys."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError([f"{source}:{line}: invalid YAML: character {e.character:#x} is not allowed"]) from None
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        duplicates: list[tuple[int, str]] = []
        if node is not None:
            _index(node, (), lines, duplicates, set())
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        detail = f"{e.problem} ({e.context})" if e.problem and e.context else (e.problem or e.context or str(e))
        raise ConfigError([f"{source}:{line}: invalid YAML: {detail}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{source}: invalid YAML: {e}"]) from None
    finally:
        loader.dispose()
    if node is None:
        raise ConfigError([f"{source}:1: the configuration is empty (at least `tenants` is needed)"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:{node.start_mark.line + 1}: the configuration must be a mapping of sections "
                           "(sip, security, media, logging, tenants)"])
    lines[()] = node.start_mark.line + 1
    return data, lines, duplicates


def _index(node: yaml.Node, path: Loc, lines: dict[Loc, int], duplicates: list[tuple[int, str]],
           open_nodes: set[int], merged: bool = False) -> None:
    """Record the line of every mapping key and sequence item below `node` (1-based)."""
    if id(node) in open_nodes:  # a recursive alias
        return
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges += value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen and not merged:
                duplicates.append((line, f"{_dotted((*path, key))}: duplicate key (first at line {seen[key]})"))
            seen.setdefault(key, line)
            if merged:
                lines.setdefault((*path, key), line)
            else:
                lines[(*path, key)] = line
            _index(value_node, (*path, key), lines, duplicates, open_nodes, merged)
        for source in merges:
            _index(source, path, lines, duplicates, open_nodes, merged=True)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, i), item.start_mark.line + 1)
            _index(item, (*path, i), lines, duplicates, open_nodes, merged)
    open_nodes.discard(id(node))


def _locate_errors(error: ValidationError, data: dict[str, Any], lines: dict[Loc, int]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    items = error.errors(include_url=False)
    for item in items:
        loc: Loc = tuple(item["loc"])
        if item["type"] == "too_short" and any(len(o["loc"]) > len(loc) and o["loc"][: len(loc)] == loc
                                               for o in items):
            continue  # "too few items after validation" only because some items were refused: those say why
        if item["type"] == _PROBLEMS:
            base = _data_path(loc, data, missing=False)
            for sub, msg in item["ctx"]["problems"]:
                path = (*base, *sub)
                out.append((_line(path, lines), f"{_dotted(path)}: {msg}"))
            continue
        path = _data_path(loc, data, missing=item["type"] == "missing")
        out.append((_line(path, lines), f"{_dotted(path) or '(top level)'}: {_message(item, path)}"))
    return out


def _data_path(loc: Loc, data: object, missing: bool) -> Loc:
    """The part of a pydantic `loc` that names places in the data (validator tags dropped)."""
    path: list[str | int] = []
    node: object = data
    for elem in loc:
        if isinstance(node, dict):
            key = elem if elem in node else str(elem) if str(elem) in node else None
            if key is not None:
                path.append(str(key))
                node = node[key]
            elif missing and elem == loc[-1]:
                path.append(str(elem))
                node = None
        elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
            path.append(elem)
            node = node[elem]
    return tuple(path)


def _line(path: Loc, lines: dict[Loc, int]) -> int:
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return 1


def _dotted(path: Loc) -> str:
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", elem):
            out += f".{elem}" if out else elem
        else:
            out += f"[{elem!r}]"
    return out


def _message(item: Any, path: Loc) -> str:
    kind, msg = item["type"], str(item["msg"])
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return _unknown_key(path)
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[:1].lower() + msg[1:] if msg[1:2].islower() else msg


def _unknown_key(path: Loc) -> str:
    model = _model_at(path[:-1])
    if model is None or not path or not isinstance(path[-1], str):
        return "unknown key"
    known = list(model.model_fields)
    close = difflib.get_close_matches(path[-1], known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (expected one of: {', '.join(known)})"


def _model_at(path: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at `path`, found through the field annotations."""
    tp: Any = Config
    for elem in path:
        tp = _unwrap(tp)
        if isinstance(elem, int):
            if get_origin(tp) not in (tuple, list):
                return None
            tp = get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and elem in tp.model_fields:
            tp = tp.model_fields[elem].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else tp
    return tp

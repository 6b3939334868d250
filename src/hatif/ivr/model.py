"""The IVR flow schema: flows of nodes (say, menu, collect, language, condition, http, route).

A tenant's configuration holds named flows (FEATURES.md §2: menus by keypad, routing by input and by
rules: business hours, holidays, language, VIP)::

    flows:
      main:
        start: hours
        nodes:
          hours:   {type: condition, cases: [{when: {hours: office}, next: menu}], default: closed}
          menu:    {type: menu, prompt: {en: "For sales press 1", ar: "...", fa: "..."},
                    options: {"1": sales}, on_fail: bye}
          sales:   {type: route, to: "queue:sales", on_fail: bye}
          closed:  {type: route, to: "number:+966500000000"}
          bye:     {type: route, to: hangup, message: "Goodbye"}

The tenant's `schedules` and `lists` are described in `hatif.ivr.rules`.

Node types (the `type` key): `say`, `menu`, `collect`, `language`, `condition`, `http`, `route`. Every
text a caller hears is either one string (the same for every language) or a mapping of language to text
(`en`, `ar`, `fa`); a caller whose language has no text hears the first one given, in its own voice. Texts
are templates (`hatif.ivr.template`): `{order}` reads a call variable.

These models check each node on its own. What relates nodes, flows and the rest of the tenant (missing
nodes, unreachable nodes, loops without input, unknown queues or users) is checked by
`hatif.ivr.validate`, once everything is parsed. All models are frozen; unknown keys are errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    model_validator,
)

from .rules import NumberList, Schedule, parse_number
from .template import VARIABLE, parse_template

Language = Literal["en", "ar", "fa"]
LANGUAGES: tuple[Language, ...] = ("en", "ar", "fa")
ANY_LANGUAGE = "*"
"""The key under which a text given as one string is kept: it is spoken in the caller's language."""

BUILTIN_VARIABLES = frozenset({"caller", "caller_name", "called", "language", "call_id"})
"""Variables every call has: the caller's number and name, the number dialed, the current language."""

DIGITS = "0123456789*#"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")

T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


# -- small types ---------------------------------------------------------------------------------------------


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a name: letters, digits, _ and - (up to 64, not starting with -)")
    return value


def _variable(value: str) -> str:
    if not VARIABLE.fullmatch(value):
        raise ValueError(f"{value!r} is not a variable name: a letter or _, then letters, digits and _ (up to 64)")
    return value


def _assignable(value: str) -> str:
    if value in BUILTIN_VARIABLES:
        raise ValueError(f"{value!r} is set by Hatif for every call and cannot be assigned "
                         f"(built-in: {', '.join(sorted(BUILTIN_VARIABLES))})")
    return value


def _digit(value: object) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or len(text) != 1 or text not in DIGITS:
        raise ValueError(f"{value!r} is not a key: one of 0-9, * and # (quote * and # in YAML)")
    return text


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _template(value: str) -> str:
    if not value.strip():
        raise ValueError("the text is empty")
    parse_template(value)
    return value


def _localized(value: object) -> object:
    """One string (any language) or a mapping of languages; the result always has language keys."""
    if isinstance(value, str):
        return {ANY_LANGUAGE: value}
    if isinstance(value, Path):
        return {ANY_LANGUAGE: value}
    if not isinstance(value, Mapping):
        raise ValueError("expected a text, or a mapping of language (en, ar, fa) to text")
    if not value:
        raise ValueError("at least one language is needed")
    out: dict[str, object] = {}
    for key, item in value.items():
        lang = key.lower() if isinstance(key, str) else key
        if lang not in LANGUAGES and lang != ANY_LANGUAGE:
            raise ValueError(f"unknown language {key!r} (expected en, ar or fa)")
        out[lang] = item
    return out


Name = Annotated[str, AfterValidator(_name)]
Variable = Annotated[str, AfterValidator(_variable)]
Assignable = Annotated[str, AfterValidator(_variable), AfterValidator(_assignable)]
Digit = Annotated[str, PlainValidator(_digit)]
TextTemplate = Annotated[str, AfterValidator(_template)]
Texts = Annotated[dict[str, TextTemplate], BeforeValidator(_localized)]
"""Text per language; a single string is stored under `ANY_LANGUAGE`."""
Wavs = Annotated[dict[str, Path], BeforeValidator(_localized)]
LanguageName = Annotated[Language, BeforeValidator(_lower)]


def pick(values: Mapping[str, T], language: str) -> tuple[T, str]:
    """The value for `language` (or the any-language one) and the language to speak it in; else the first."""
    if language in values:
        return values[language], language
    if ANY_LANGUAGE in values:
        return values[ANY_LANGUAGE], language
    first = next(iter(values))
    return values[first], first


class Prompt(_Model):
    """What a node says: `text` (spoken with espeak-ng) and/or `wav` (a recording), each per language.

    Written as one string, as a mapping of language to text, or as `{text: ..., wav: ...}`. A recording in
    the caller's language is preferred to a text, a text in the caller's language to a recording in another.
    """

    text: Texts | None = None
    wav: Wavs | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"text": data}
        if isinstance(data, Mapping) and data and not set(data) & {"text", "wav"}:
            return {"text": data}
        return data

    @model_validator(mode="after")
    def _something(self) -> Prompt:
        if self.text is None and self.wav is None:
            raise ValueError("a prompt needs a text or a wav")
        return self


def _prompt(texts: dict[str, str]) -> Prompt:
    return Prompt(text=texts)


MENU_INVALID = _prompt({"en": "Sorry, that is not a valid choice.",
                        "ar": "عذرًا، هذا الاختيار غير صحيح.",
                        "fa": "متأسفم، این گزینه معتبر نیست."})
MENU_TIMEOUT = _prompt({"en": "Sorry, we did not receive your choice.",
                        "ar": "عذرًا، لم نستلم اختيارك.",
                        "fa": "متأسفم، انتخاب شما دریافت نشد."})
COLLECT_INVALID = _prompt({"en": "Sorry, that number is not valid.",
                           "ar": "عذرًا، هذا الرقم غير صحيح.",
                           "fa": "متأسفم، این شماره معتبر نیست."})
COLLECT_TIMEOUT = _prompt({"en": "Sorry, we did not receive any digits.",
                           "ar": "عذرًا، لم نستلم أي أرقام.",
                           "fa": "متأسفم، هیچ رقمی دریافت نشد."})
LANGUAGE_OPTION: dict[Language, str] = {
    "en": "For English, press {key}.",
    "ar": "للعربية، اضغط {key}.",
    "fa": "برای فارسی، {key} را فشار دهید.",
}
"""The default prompt of a language choice: each option spoken in its own language (`{key}`: the key)."""
KEY_NAMES: dict[Language, dict[str, str]] = {
    "en": {"*": "star", "#": "pound"},
    "ar": {"*": "النجمة", "#": "المربع"},
    "fa": {"*": "ستاره", "#": "مربع"},
}


# -- route targets ---------------------------------------------------------------------------------------------

RouteKind = Literal["queue", "user", "extension", "number", "endpoint", "voicemail", "flow", "hangup"]
_ROUTE_FORMS = ("'queue:NAME', 'user:NAME', 'extension:N', 'number:DIGITS', 'endpoint:NAME/DIGITS', "
                "'voicemail:MAILBOX', 'flow:NAME' or 'hangup'")


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """Where a `route` node sends the caller; written `kind:name` (`hangup` alone).

    `endpoint:NAME/DIGITS` calls an outside number through a named trunk; `number:DIGITS` lets the
    tenant's dial plan pick the trunk.
    """

    kind: RouteKind
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> RouteTarget:
        kind, sep, name = text.strip().partition(":")
        name = name.strip()
        if kind == "hangup" and not name:
            return cls("hangup")
        if not sep or not name:
            raise ValueError(f"{text!r}: expected {_ROUTE_FORMS}")
        if kind in ("queue", "voicemail", "flow"):
            return cls(cast(RouteKind, kind), _name(name))
        if kind == "user":
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", name):
                raise ValueError(f"{name!r} is not a username")
            return cls("user", name)
        if kind == "extension":
            if not re.fullmatch(r"[0-9]{1,32}", name):
                raise ValueError(f"{name!r} is not an extension: digits 0-9 only")
            return cls("extension", name)
        if kind == "number":
            return cls("number", parse_number(name))
        if kind == "endpoint":
            trunk, slash, number = name.partition("/")
            if not slash or not number:
                raise ValueError(f"{text!r}: expected 'endpoint:NAME/DIGITS', e.g. 'endpoint:carrier/+966500000000'")
            return cls("endpoint", f"{_name(trunk)}/{parse_number(number)}")
        raise ValueError(f"{text!r}: unknown kind {kind!r} (expected {_ROUTE_FORMS})")

    @property
    def dial(self) -> str:
        """What `Channel.connect` is given for the kinds it reaches itself."""
        return self.name if self.kind == "number" else str(self)

    def __str__(self) -> str:
        return self.kind if self.kind == "hangup" else f"{self.kind}:{self.name}"


def _route_target(value: object) -> RouteTarget:
    if isinstance(value, RouteTarget):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected {_ROUTE_FORMS}")
    return RouteTarget.parse(value)


Target = Annotated[RouteTarget, PlainValidator(_route_target), PlainSerializer(str)]
CONNECT_KINDS = frozenset({"user", "extension", "number", "endpoint"})
"""Route kinds the runner reaches with `Channel.connect`."""


# -- conditions ------------------------------------------------------------------------------------------------


class HoursCondition(_Model):
    """True while the named schedule is open."""

    hours: Name


class CallerInCondition(_Model):
    """True when the caller's number (normalized) is in the named list."""

    caller_in: Name


Operator = Literal["eq", "ne", "lt", "gt", "in", "prefix"]


class VariableCondition(_Model):
    """Compare a call variable: `eq`, `ne`, `prefix` as text, `lt`, `gt` as numbers, `in` a list of texts.

    An unset variable reads as the empty string (so it is never `lt` or `gt` anything).
    """

    var: Variable
    op: Annotated[Operator, BeforeValidator(_lower)] = "eq"
    value: str | tuple[str, ...]

    @model_validator(mode="after")
    def _value_fits(self) -> VariableCondition:
        if self.op == "in":
            if not isinstance(self.value, tuple):
                raise ValueError("'in' compares with a list of values, e.g. value: ['1', '2']")
        elif isinstance(self.value, tuple):
            raise ValueError(f"'{self.op}' compares with one value, not a list")
        elif self.op in ("lt", "gt") and _as_number(self.value) is None:
            raise ValueError(f"'{self.op}' compares numbers, and {self.value!r} is not a number")
        return self

    def test(self, values: Mapping[str, str]) -> bool:
        actual = values.get(self.var, "")
        if self.op == "in":
            return actual in self.value
        assert isinstance(self.value, str)
        if self.op == "eq":
            return actual == self.value
        if self.op == "ne":
            return actual != self.value
        if self.op == "prefix":
            return actual.startswith(self.value)
        left, right = _as_number(actual), _as_number(self.value)
        if left is None or right is None:
            return False
        return left < right if self.op == "lt" else left > right


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _condition_kind(data: Any) -> str | None:
    keys = set(data) if isinstance(data, Mapping) else {k for k in ("hours", "caller_in", "var")
                                                         if getattr(data, k, None) is not None}
    for kind in ("hours", "caller_in", "var"):
        if kind in keys:
            return kind
    return None


Condition = Annotated[
    Annotated[HoursCondition, Tag("hours")] | Annotated[CallerInCondition, Tag("caller_in")]
    | Annotated[VariableCondition, Tag("var")],
    Discriminator(_condition_kind, custom_error_type="condition",
                  custom_error_message="expected {hours: SCHEDULE}, {caller_in: LIST} "
                                       "or {var: NAME, op: eq, value: VALUE}"),
]


class Case(_Model):
    when: Condition
    next: Name


# -- nodes -----------------------------------------------------------------------------------------------------


class _Node(_Model):
    description: str | None = None
    """Free text for the people who maintain the flow."""


class SayNode(_Node):
    """Say a text or play a recording; then go to `next`, or hang up when there is none."""

    type: Literal["say"]
    text: Texts | None = None
    wav: Wavs | None = None
    next: Name | None = None

    @model_validator(mode="after")
    def _something(self) -> SayNode:
        if self.text is None and self.wav is None:
            raise ValueError("a say node needs a text or a wav")
        return self

    @property
    def prompt(self) -> Prompt:
        return Prompt.model_construct(text=self.text, wav=self.wav)


class MenuNode(_Node):
    """Ask for one key: `options` maps keys to nodes. The prompt can be interrupted (type-ahead).

    `retries` is how many times the caller is asked in all; after each miss they hear `invalid` (a key
    that is no option) or `timeout_prompt` (nothing within `timeout` seconds), and after the last one the
    flow goes to `on_fail` (the call is hung up when there is none).
    """

    type: Literal["menu"]
    prompt: Prompt
    options: dict[Digit, Name] = Field(min_length=1)
    timeout: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=3, ge=1, le=10)
    invalid: Prompt = MENU_INVALID
    timeout_prompt: Prompt = MENU_TIMEOUT
    on_fail: Name | None = None


class CollectNode(_Node):
    """Collect `min_digits` to `max_digits` digits into `variable` (ended early by `terminator`).

    `timeout` is for the first digit, `inter_digit` between the next ones. Tries, prompts on a miss and
    `on_fail` work as in a menu.
    """

    type: Literal["collect"]
    prompt: Prompt
    variable: Assignable
    min_digits: int = Field(default=1, ge=1, le=32)
    max_digits: int = Field(default=16, ge=1, le=32)
    terminator: Literal["#", "*", ""] = "#"
    timeout: float = Field(default=5.0, gt=0, le=60)
    inter_digit: float = Field(default=3.0, gt=0, le=30)
    retries: int = Field(default=3, ge=1, le=10)
    invalid: Prompt = COLLECT_INVALID
    timeout_prompt: Prompt = COLLECT_TIMEOUT
    next: Name
    on_fail: Name | None = None

    @model_validator(mode="after")
    def _bounds(self) -> CollectNode:
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits ({self.min_digits}) exceeds max_digits ({self.max_digits})")
        return self


def _per_language(value: object) -> object:
    if not isinstance(value, Mapping):
        raise ValueError("a language choice's prompt maps each language (en, ar, fa) to its text")
    return _localized(value)


class LanguageNode(_Node):
    """Set the call's language (`set: ar`) or let the caller choose it (`options: {"1": ar, "2": fa}`).

    The choice's `prompt` maps languages to texts, each spoken in its own language in the order of the
    options (by default "For English, press 3" and its Arabic and Persian equivalents). When the caller
    does not choose, the language stays as it was and the flow goes on to `on_fail`, else to `next`.
    """

    type: Literal["language"]
    set: LanguageName | None = None
    options: dict[Digit, LanguageName] | None = Field(default=None, min_length=1)
    prompt: Annotated[dict[LanguageName, TextTemplate], BeforeValidator(_per_language)] | None = None
    timeout: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=2, ge=1, le=10)
    next: Name
    on_fail: Name | None = None

    @model_validator(mode="after")
    def _one_way(self) -> LanguageNode:
        if (self.set is None) == (self.options is None):
            raise ValueError("a language node has either `set` (a language) or `options` (keys to languages)")
        if self.set is not None and (self.prompt is not None or self.on_fail is not None):
            raise ValueError("`prompt` and `on_fail` belong to a language choice (`options`), not to `set`")
        return self

    @property
    def asks(self) -> bool:
        """Whether the caller is asked (a choice waits for input; `set` does not)."""
        return self.options is not None


class ConditionNode(_Node):
    """Go to the `next` of the first case whose condition holds, else to `default`."""

    type: Literal["condition"]
    cases: tuple[Case, ...] = Field(min_length=1)
    default: Name


def _json_path(value: str) -> str:
    if not value or any(not part for part in value.split(".")):
        raise ValueError(f"{value!r} is not a JSON path: names or list indexes separated by dots, e.g. 'order.status'")
    return value


def _url_template(value: str) -> str:
    parse_template(value)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if not authority or "{" in authority or "}" in authority:
        raise ValueError(f"{value!r}: the host must be written out (variables go in the path or the query)")
    return value


class HttpNode(_Node):
    """Ask a web service: GET (or POST a JSON `body`) `url`, read `extract` paths out of the JSON answer.

    On success the extracted values become call variables, `say` (a template) is spoken and the flow
    goes to `next`. A timeout, a connection error, a status other than 2xx, a body that is not JSON or
    lacks a path all go to `on_error`, and the reason is logged.
    """

    type: Literal["http"]
    url: Annotated[str, AfterValidator(_url_template)]
    method: Annotated[Literal["GET", "POST"], BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)] = "GET"
    timeout: float = Field(default=3.0, gt=0, le=30)
    body: dict[str, TextTemplate] | None = None
    extract: dict[Assignable, Annotated[str, AfterValidator(_json_path)]] = Field(default_factory=dict)
    say: Texts | None = None
    next: Name
    on_error: Name

    @model_validator(mode="after")
    def _body_posted(self) -> HttpNode:
        if self.body is not None and self.method != "POST":
            raise ValueError("a `body` is sent with method POST only")
        return self


class RouteNode(_Node):
    """Send the caller on: to a queue, a person, a number, a voicemail box, another flow, or hang up.

    `message` is said first (a goodbye before `hangup`, "connecting you" before a transfer). When the
    target cannot be reached (busy, no answer, no agent) the flow goes to `on_fail`; without one the call
    is hung up. `timeout` is how long a person or number may ring.
    """

    type: Literal["route"]
    to: Target
    message: Prompt | None = None
    timeout: float | None = Field(default=None, gt=0, le=600)
    on_fail: Name | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> RouteNode:
        if self.on_fail is not None and self.to.kind in ("hangup", "flow", "voicemail"):
            raise ValueError(f"a route to {self.to.kind} does not come back: `on_fail` has no use here")
        if self.timeout is not None and self.to.kind not in CONNECT_KINDS:
            raise ValueError("`timeout` is the ringing time of a user, extension, number or endpoint")
        return self


Node = Annotated[
    SayNode | MenuNode | CollectNode | LanguageNode | ConditionNode | HttpNode | RouteNode,
    Field(discriminator="type"),
]
INPUT_NODES = (MenuNode, CollectNode)
"""Nodes that wait for the caller (with a choosing `LanguageNode`): a loop must pass one of them."""


def waits_for_input(node: Node) -> bool:
    return isinstance(node, INPUT_NODES) or (isinstance(node, LanguageNode) and node.asks)


class Flow(_Model):
    """A named IVR flow: its nodes by name and the one it starts at."""

    start: Name
    nodes: dict[Name, Node] = Field(min_length=1)
    description: str | None = None


@dataclass(frozen=True, slots=True)
class FlowSet:
    """A tenant's IVR: its flows with the schedules, lists and time zone their conditions consult."""

    flows: Mapping[str, Flow]
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    lists: Mapping[str, NumberList] = field(default_factory=dict)
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

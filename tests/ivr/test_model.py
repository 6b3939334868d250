"""The flow schema: short forms, defaults, and errors that name the field, for every node type."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from hatif.ivr.model import (
    CollectNode,
    ConditionNode,
    Flow,
    HttpNode,
    LanguageNode,
    MenuNode,
    Prompt,
    RouteNode,
    RouteTarget,
    SayNode,
    VariableCondition,
    pick,
)
from hatif.ivr.template import parse_template, render, template_variables


def node(data: dict[str, Any]) -> Any:
    return Flow.model_validate({"start": "n", "nodes": {"n": data}}).nodes["n"]


def errors(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as e:
        node(data)
    return [(tuple(err["loc"]), err["msg"]) for err in e.value.errors()]


def test_yaml_short_forms() -> None:
    flow = Flow.model_validate(yaml.safe_load("""
start: menu
nodes:
  menu:
    type: menu
    prompt: {EN: "Press 1", ar: "اضغط 1"}
    options: {1: hi, 0: hi, "*": hi, "#": hi}
  hi: {type: say, text: "Hello", next: menu}
  ask: {type: collect, prompt: {text: "Order?", wav: prompts/order.wav}, variable: order, next: hi}
"""))
    menu = flow.nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert menu.prompt.text == {"en": "Press 1", "ar": "اضغط 1"}
    assert list(menu.options) == ["1", "0", "*", "#"]
    assert (menu.timeout, menu.retries, menu.on_fail) == (5.0, 3, None)
    assert menu.invalid.text is not None and menu.invalid.text["fa"] == "متأسفم، این گزینه معتبر نیست."
    ask = flow.nodes["ask"]
    assert isinstance(ask, CollectNode)
    assert ask.prompt.wav is not None and str(ask.prompt.wav["*"]) == "prompts/order.wav"
    assert (ask.min_digits, ask.max_digits, ask.terminator) == (1, 16, "#")


def test_pick_prefers_the_callers_language() -> None:
    assert pick({"en": "Hi", "ar": "مرحبا"}, "ar") == ("مرحبا", "ar")
    assert pick({"*": "Hi"}, "fa") == ("Hi", "fa")
    assert pick({"ar": "مرحبا", "fa": "سلام"}, "en") == ("مرحبا", "ar")


@pytest.mark.parametrize(("text", "kind", "name", "dial"), [
    ("queue:sales", "queue", "sales", "queue:sales"),
    ("user:dr.amini", "user", "dr.amini", "user:dr.amini"),
    ("extension:1001", "extension", "1001", "extension:1001"),
    ("number:+966 50 000-0000", "number", "+966500000000", "+966500000000"),
    ("endpoint:carrier/00 98 21 1234", "endpoint", "carrier/0098211234", "endpoint:carrier/0098211234"),
    ("voicemail:general", "voicemail", "general", "voicemail:general"),
    ("flow:after_hours", "flow", "after_hours", "flow:after_hours"),
    ("hangup", "hangup", "", "hangup"),
])
def test_route_targets(text: str, kind: str, name: str, dial: str) -> None:
    target = RouteTarget.parse(text)
    assert (target.kind, target.name, target.dial) == (kind, name, dial)


@pytest.mark.parametrize(("to", "message"), [
    ("queue", "expected 'queue:NAME'"),
    ("desk:1", "unknown kind 'desk'"),
    ("extension:12a", "'12a' is not an extension"),
    ("number:call me", "'call me' is not a telephone number"),
    ("endpoint:carrier", "expected 'endpoint:NAME/DIGITS'"),
    ("queue:Sales Team", "'Sales Team' is not a name"),
])
def test_route_target_errors(to: str, message: str) -> None:
    found = errors({"type": "route", "to": to})
    assert found[0][0] == ("nodes", "n", "route", "to")
    assert message in found[0][1]


@pytest.mark.parametrize(("data", "loc", "message"), [
    ({"type": "say"}, ("nodes", "n", "say"), "a say node needs a text or a wav"),
    ({"type": "say", "text": {"de": "Hallo"}}, ("nodes", "n", "say", "text"), "unknown language 'de'"),
    ({"type": "say", "text": "Order {order.id}"}, ("nodes", "n", "say", "text", "*"), "is not a variable name"),
    ({"type": "say", "text": "x", "nxt": "a"}, ("nodes", "n", "say", "nxt"), "Extra inputs are not permitted"),
    ({"type": "menu", "prompt": "x", "options": {"10": "a"}}, ("nodes", "n", "menu", "options", "10", "[key]"),
     "'10' is not a key"),
    ({"type": "menu", "prompt": "x", "options": {"1": "a"}, "retries": 0}, ("nodes", "n", "menu", "retries"),
     "greater than or equal to 1"),
    ({"type": "collect", "prompt": "x", "variable": "order", "min_digits": 5, "max_digits": 4, "next": "a"},
     ("nodes", "n", "collect"), "min_digits (5) exceeds max_digits (4)"),
    ({"type": "collect", "prompt": "x", "variable": "2nd", "next": "a"}, ("nodes", "n", "collect", "variable"),
     "'2nd' is not a variable name"),
    ({"type": "collect", "prompt": "x", "variable": "language", "next": "a"}, ("nodes", "n", "collect", "variable"),
     "cannot be assigned"),
    ({"type": "collect", "prompt": "x", "variable": "v", "terminator": "5", "next": "a"},
     ("nodes", "n", "collect", "terminator"), "Input should be '#', '*' or ''"),
    ({"type": "language", "set": "ar", "options": {"1": "fa"}, "next": "a"}, ("nodes", "n", "language"),
     "either `set`"),
    ({"type": "language", "set": "de", "next": "a"}, ("nodes", "n", "language", "set"), "Input should be 'en'"),
    ({"type": "language", "options": {"1": "ar"}, "prompt": "Choose", "next": "a"},
     ("nodes", "n", "language", "prompt"), "maps each language"),
    ({"type": "condition", "cases": [{"when": {"day": "mon"}, "next": "a"}], "default": "a"},
     ("nodes", "n", "condition", "cases", 0, "when"), "expected {hours: SCHEDULE}"),
    ({"type": "condition", "cases": [{"when": {"var": "x", "op": "in", "value": "1"}, "next": "a"}], "default": "a"},
     ("nodes", "n", "condition", "cases", 0, "when", "var"), "'in' compares with a list"),
    ({"type": "condition", "cases": [{"when": {"var": "x", "op": "like", "value": "1"}, "next": "a"}],
      "default": "a"}, ("nodes", "n", "condition", "cases", 0, "when", "var", "op"), "Input should be 'eq'"),
    ({"type": "http", "url": "ftp://x/{o}", "next": "a", "on_error": "b"}, ("nodes", "n", "http", "url"),
     "is not an http:// or https:// URL"),
    ({"type": "http", "url": "http://{host}/x", "next": "a", "on_error": "b"}, ("nodes", "n", "http", "url"),
     "the host must be written out"),
    ({"type": "http", "url": "http://x/", "body": {"a": "b"}, "next": "a", "on_error": "b"},
     ("nodes", "n", "http"), "with method POST only"),
    ({"type": "http", "url": "http://x/", "extract": {"s": "a..b"}, "next": "a", "on_error": "b"},
     ("nodes", "n", "http", "extract", "s"), "is not a JSON path"),
    ({"type": "http", "url": "http://x/", "next": "a"}, ("nodes", "n", "http", "on_error"), "Field required"),
    ({"type": "route", "to": "flow:x", "on_fail": "a"}, ("nodes", "n", "route"), "does not come back"),
    ({"type": "route", "to": "queue:x", "timeout": 5}, ("nodes", "n", "route"), "ringing time"),
    ({"type": "sya"}, ("nodes", "n"), "does not match any of the expected tags"),
])
def test_node_errors_name_the_field(data: dict[str, Any], loc: tuple[str | int, ...], message: str) -> None:
    found = errors(data)
    assert any(where == loc and message in m for where, m in found), found


def test_node_types() -> None:
    assert isinstance(node({"type": "say", "wav": "a.wav"}), SayNode)
    assert isinstance(node({"type": "language", "set": "fa", "next": "a"}), LanguageNode)
    assert isinstance(node({"type": "condition", "cases": [{"when": {"hours": "x"}, "next": "a"}], "default": "a"}),
                      ConditionNode)
    http = node({"type": "http", "url": "https://shop.example/o/{o}?lang={language}", "method": "post",
                 "body": {"o": "{o}"}, "next": "a", "on_error": "a"})
    assert isinstance(http, HttpNode) and http.method == "POST" and http.timeout == 3.0
    assert isinstance(node({"type": "route", "to": "hangup", "message": "Bye"}), RouteNode)
    assert Prompt.model_validate("Hi").text == {"*": "Hi"}


@pytest.mark.parametrize(("op", "value", "actual", "holds"), [
    ("eq", "1", "1", True), ("eq", "1", "01", False), ("ne", "1", "2", True),
    ("lt", "10", "9", True), ("lt", "10", "10", False), ("gt", "2.5", "3", True), ("gt", "1", "", False),
    ("gt", "1", "abc", False), ("in", ["1", "2"], "2", True), ("in", ["1", "2"], "3", False),
    ("prefix", "+966", "+966501234567", True), ("prefix", "+98", "+966501234567", False),
])
def test_variable_comparisons(op: str, value: object, actual: str, holds: bool) -> None:
    cond = VariableCondition.model_validate({"var": "x", "op": op, "value": value})
    assert cond.test({"x": actual}) is holds


def test_templates() -> None:
    assert parse_template("Order {order} is {{ready}}") == ("Order ", ("order",), " is {ready}")
    assert template_variables("{a}{b} {a}") == {"a", "b"}
    assert render("Order {order}: {status}", {"order": "7"}) == "Order 7: "
    assert render("/o/{q}", {"q": "a b/c?d#e&f"}, url=True) == "/o/a%20b%2Fc%3Fd%23e%26f"
    assert render("سفارش {order}", {"order": "۱۲"}, url=True) == "سفارش %DB%B1%DB%B2"
    for bad, message in [("{", "unmatched '{'"), ("a}", "unmatched '}'"), ("{a.b}", "not a variable name"),
                         ("{0}", "not a variable name"), ("{a!r}", "not a variable name")]:
        with pytest.raises(ValueError, match=message):
            parse_template(bad)

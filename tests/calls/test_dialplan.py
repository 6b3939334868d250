"""The dial plan as call routing: rules in order, rewrites, extensions that must exist."""

from __future__ import annotations

import re
from types import MappingProxyType

from hatif.calls.dialplan import DialPlan, Route, RoutingRule

PLAN = DialPlan(
    (
        RoutingRule(re.compile(r"^1\d{3}$"), "extension"),
        RoutingRule(re.compile(r"^1(\d{3})$"), "endpoint", "carrier", r"+441\1"),
        RoutingRule(re.compile(r"^0$"), "user", "operator"),
        RoutingRule(re.compile(r"^9(\d+)$"), "endpoint", "carrier", r"00\1"),
        RoutingRule(re.compile(r"^\*43$"), "app", "echo"),
    ),
    MappingProxyType({"1001": "1001", "1002": "reza"}),
)


def test_an_extension_reaches_its_user() -> None:
    assert PLAN.route("1002") == Route("user", "reza", "1002")


def test_an_extension_nobody_has_falls_to_the_next_rule() -> None:
    assert PLAN.route("1999") == Route("endpoint", "carrier", "+441999")


def test_the_number_is_rewritten_from_the_match() -> None:
    assert PLAN.route("9442079460000") == Route("endpoint", "carrier", "00442079460000")


def test_users_and_applications_by_name() -> None:
    assert PLAN.route("0") == Route("user", "operator", "0")
    assert PLAN.route("*43") == Route("app", "echo", "*43")


def test_no_rule_no_route() -> None:
    assert PLAN.route("555") is None
    assert DialPlan().route("1001") is None

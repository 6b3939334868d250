"""Load-time checks of flows: each kind of mistake is refused with a message naming the flow and node."""

from __future__ import annotations

import pytest
import yaml

from hatif.ivr.model import Flow
from hatif.ivr.validate import FlowError, KnownTargets, check_flows, flow_problems, validate_flows

KNOWN = KnownTargets(users=frozenset({"alice"}), extensions=frozenset({"1001"}), queues=frozenset({"sales", "support"}),
                     mailboxes=frozenset({"general"}), endpoints=frozenset({"carrier"}),
                     schedules=frozenset({"office"}), lists=frozenset({"vip"}))


def flows(text: str) -> dict[str, Flow]:
    return {name: Flow.model_validate(f) for name, f in yaml.safe_load(text).items()}


def problems(text: str, known: KnownTargets = KNOWN) -> list[str]:
    return validate_flows(flows(text), known)


def test_a_good_flow_has_no_problems() -> None:
    assert problems("""
main:
  start: hours
  nodes:
    hours: {type: condition, cases: [{when: {hours: office}, next: menu}, {when: {caller_in: vip}, next: menu}],
            default: closed}
    menu: {type: menu, prompt: "1 sales, 2 order, 3 again", options: {1: sales, 2: order, 3: menu}, on_fail: bye}
    sales: {type: route, to: "queue:sales", on_fail: vm}
    vm: {type: route, to: "voicemail:general"}
    order: {type: collect, prompt: "Order?", variable: order, next: lookup, on_fail: menu}
    lookup: {type: http, url: "http://127.0.0.1:8700/orders/{order}", extract: {status: status},
             say: "Order {order} is {status}", next: menu, on_error: menu}
    closed: {type: route, to: "endpoint:carrier/+966500000000", on_fail: bye}
    bye: {type: route, to: hangup, message: "Goodbye {caller_name}"}
""") == []


def test_missing_node_references_name_the_node_and_field() -> None:
    found = problems("""
main:
  start: menu
  nodes:
    menu: {type: menu, prompt: "x", options: {1: salse, 2: sales}, on_fail: gone}
    sales: {type: say, text: "Sales", next: nowhere}
    check: {type: condition, cases: [{when: {var: caller, value: "1"}, next: nope}], default: sales}
""")
    assert "flows.main.nodes.menu.options['1']: 'salse' is not a node of flow main (did you mean 'sales'?)" \
        in found
    assert "flows.main.nodes.menu.on_fail: 'gone' is not a node of flow main" in found
    assert "flows.main.nodes.sales.next: 'nowhere' is not a node of flow main" in found
    assert "flows.main.nodes.check.cases[0].next: 'nope' is not a node of flow main" in found


def test_missing_start_node() -> None:
    found = problems("""
main:
  start: welcom
  nodes:
    welcome: {type: say, text: "Hi"}
""")
    assert found == ["flows.main.start: start node 'welcom' is not a node of flow main (did you mean 'welcome'?)"]


def test_unreachable_nodes() -> None:
    found = problems("""
main:
  start: a
  nodes:
    a: {type: say, text: "a"}
    orphan: {type: say, text: "b", next: a}
""")
    assert found == ["flows.main.nodes.orphan: node 'orphan' cannot be reached from the start node 'a'"]


@pytest.mark.parametrize(("to", "message"), [
    ("queue:sale", "there is no queue 'sale' (did you mean 'sales'?)"),
    ("user:bob", "there is no user 'bob'"),
    ("extension:2002", "there is no extension '2002'"),
    ("voicemail:support", "there is no voicemail box 'support'"),
    ("flow:other", "there is no flow 'other'"),
    ("endpoint:trunk/0551234567", "there is no endpoint 'trunk'"),
])
def test_route_targets_must_exist(to: str, message: str) -> None:
    found = problems(f"""
main:
  start: go
  nodes:
    go: {{type: route, to: "{to}"}}
""")
    assert found == [f"flows.main.nodes.go.to: {message}"]


def test_unconfigured_kinds_are_not_checked_and_numbers_ask_the_dial_plan() -> None:
    text = """
main:
  start: go
  nodes:
    go: {type: route, to: "queue:anything", on_fail: mobile}
    mobile: {type: route, to: "number:+98 912 000 0000"}
"""
    assert problems(text, KnownTargets()) == []
    dial_plan = KnownTargets(dialable=lambda number: number.startswith("0"))
    assert problems(text, dial_plan) == [
        "flows.main.nodes.mobile.to: the dial plan has no route for the number '+989120000000'"]


def test_schedules_lists_and_variables_must_exist() -> None:
    found = problems("""
main:
  start: check
  nodes:
    check:
      type: condition
      cases:
        - {when: {hours: ofice}, next: a}
        - {when: {caller_in: vips}, next: a}
        - {when: {var: ordr, value: "1"}, next: a}
      default: a
    a: {type: say, text: {en: "Order {order}", ar: "الطلب {ordr}"}, next: ask}
    ask: {type: collect, prompt: "Order?", variable: order, next: a}
""")
    assert found == [
        "flows.main.nodes.check.cases[0].when.hours: there is no schedule 'ofice' (did you mean 'office'?)",
        "flows.main.nodes.check.cases[1].when.caller_in: there is no list 'vips' (did you mean 'vip'?)",
        "flows.main.nodes.check.cases[2].when.var: variable 'ordr' is set by nothing (did you mean 'order'?)",
        "flows.main.nodes.a.text.ar: {ordr} reads a variable that nothing sets (did you mean 'order'?)",
    ]


def test_variables_set_in_another_flow_or_outside_count() -> None:
    text = """
main:
  start: a
  nodes:
    a: {type: say, text: "Hello {name}, order {order}"}
other:
  start: ask
  nodes:
    ask: {type: collect, prompt: "Order?", variable: order, next: go}
    go: {type: route, to: "flow:main"}
"""
    assert problems(text) == ["flows.main.nodes.a.text: {name} reads a variable that nothing sets"]
    assert problems(text, KnownTargets(variables=frozenset({"name"}))) == []


def test_loop_without_input_names_its_nodes() -> None:
    found = problems("""
main:
  start: hello
  nodes:
    hello: {type: say, text: "Hello", next: check}
    check: {type: condition, cases: [{when: {hours: office}, next: again}], default: menu}
    again: {type: say, text: "Still here", next: hello}
    menu: {type: menu, prompt: "Press 1", options: {1: menu_loop}}
    menu_loop: {type: say, text: "Again", next: menu}
""")
    assert found == ["flows.main.nodes.hello: loop without input: hello -> check -> again -> hello; a caller would "
                     "go round it forever (put a menu, collect or language choice on the way)"]


def test_a_node_looping_to_itself_and_a_failing_route_loop() -> None:
    found = problems("""
main:
  start: try
  nodes:
    try: {type: route, to: "queue:sales", on_fail: sorry}
    sorry: {type: say, text: "All busy", next: try}
    self: {type: condition, cases: [{when: {var: caller, value: "1"}, next: self}], default: try}
""")
    assert "flows.main.nodes.try: loop without input: try -> sorry -> try; a caller would go round it forever " \
           "(put a menu, collect or language choice on the way)" in found
    assert any(m.startswith("flows.main.nodes.self: loop without input: self -> self;") for m in found)


def test_language_set_is_no_input_but_a_choice_is() -> None:
    base = """
main:
  start: lang
  nodes:
    lang: {type: language, %s, next: hello}
    hello: {type: say, text: "Hello", next: lang}
"""
    assert problems(base % "set: ar")[0].startswith("flows.main.nodes.lang: loop without input: lang -> hello -> lang")
    assert problems(base % "options: {1: ar, 2: fa}") == []


def test_flows_routing_to_each_other_without_input() -> None:
    found = problems("""
main:
  start: check
  nodes:
    check: {type: condition, cases: [{when: {hours: office}, next: to_b}], default: menu}
    to_b: {type: route, to: "flow:b"}
    menu: {type: menu, prompt: "Press 1", options: {1: to_b}}
b:
  start: hi
  nodes:
    hi: {type: say, text: "Hi", next: to_main}
    to_main: {type: route, to: "flow:main"}
c:
  start: ask
  nodes:
    ask: {type: menu, prompt: "Press 1", options: {1: to_main}}
    to_main: {type: route, to: "flow:main"}
""")
    assert found == ["flows.main.nodes.to_b.to: flows route to each other without input: main (node to_b) -> "
                     "b (node to_main) -> main; a caller would go round them forever (put a menu, collect or "
                     "language choice on the way)"]


def test_a_flow_routing_to_itself_without_input() -> None:
    found = problems("""
main:
  start: again
  nodes:
    again: {type: route, to: "flow:main"}
""")
    assert found == ["flows.main.nodes.again.to: flows route to each other without input: main (node again) -> "
                     "main; a caller would go round them forever (put a menu, collect or language choice on the way)"]


def test_problems_carry_locations_and_check_raises() -> None:
    f = flows("""
main:
  start: a
  nodes:
    a: {type: say, text: "a", next: b}
""")
    assert flow_problems(f, KNOWN) == [(("flows", "main", "nodes", "a", "next"),
                                        "'b' is not a node of flow main")]
    with pytest.raises(FlowError) as e:
        check_flows(f, KNOWN)
    assert e.value.messages == ["flows.main.nodes.a.next: 'b' is not a node of flow main"]

"""Checks of a tenant's flows as a whole, run when the configuration is loaded.

The models (`hatif.ivr.model`) check each node alone; here the nodes are checked against each other and
against the rest of the tenant, so a mistake is refused at load instead of surprising a caller:

- a node reference (`next`, `options`, `on_fail`, `default`, `cases[i].next`, `on_error`) or `start`
  that names no node of the flow (with the closest name as a hint);
- nodes that cannot be reached from `start`;
- route targets, schedules and lists that do not exist (`KnownTargets`);
- template placeholders and `var` conditions that read a variable nothing sets;
- **loops without input**: a cycle of nodes none of which waits for the caller (menu, collect, language
  choice) would spin forever; the message names the nodes of the cycle;
- flows that route to each other (`flow:NAME`) with no input on the way, the same loop across flows.

Each problem is a location below the tenant (`("flows", "main", "nodes", "sales", "next")`) and a
sentence; `validate_flows` renders them as `flows.main.nodes.menu.options['1']: 'salse' is not a node of
flow main (did you mean 'sales'?)`. The configuration loader maps the locations to lines.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from ..errors import IvrError
from .model import (
    BUILTIN_VARIABLES,
    CallerInCondition,
    CollectNode,
    ConditionNode,
    Flow,
    HoursCondition,
    HttpNode,
    LanguageNode,
    MenuNode,
    Node,
    Prompt,
    RouteNode,
    SayNode,
    VariableCondition,
    waits_for_input,
)
from .template import template_variables

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


@dataclass(frozen=True, slots=True)
class KnownTargets:
    """What exists in the tenant besides its flows; a set left `None` is not checked (nothing configured
    of that kind yet, for instance before queues come to the configuration).

    `flows` defaults to the names of the flows being checked. `dialable` answers whether the dial plan
    routes an outside number (`number:DIGITS`). `variables` are set for calls by other means than flows
    (the dialer's lead data, for instance).
    """

    users: frozenset[str] | None = None
    extensions: frozenset[str] | None = None
    queues: frozenset[str] | None = None
    mailboxes: frozenset[str] | None = None
    endpoints: frozenset[str] | None = None
    flows: frozenset[str] | None = None
    schedules: frozenset[str] | None = None
    lists: frozenset[str] | None = None
    dialable: Callable[[str], bool] | None = None
    variables: frozenset[str] = frozenset()


class FlowError(IvrError, ValueError):
    """Flows that cannot run; `messages` holds each problem as `flows.FLOW.nodes.NODE.FIELD: reason`."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


def validate_flows(flows: Mapping[str, Flow], known: KnownTargets) -> list[str]:
    """Every problem of `flows`, rendered `location: reason`; an empty list when they can run."""
    return [f"{dotted(loc)}: {msg}" for loc, msg in flow_problems(flows, known)]


def check_flows(flows: Mapping[str, Flow], known: KnownTargets) -> None:
    """Raise `FlowError` listing every problem of `flows`."""
    messages = validate_flows(flows, known)
    if messages:
        raise FlowError(messages)


def flow_problems(flows: Mapping[str, Flow], known: KnownTargets) -> list[Problem]:
    """Every problem of `flows` as (location below the tenant, reason), flow by flow, in file order."""
    flow_names = known.flows if known.flows is not None else frozenset(flows)
    variables = BUILTIN_VARIABLES | known.variables | _assigned(flows)
    problems: list[Problem] = []
    for name, flow in flows.items():
        problems += _flow_problems(name, flow, known, flow_names, variables)
    problems += _flow_cycles(flows)
    return problems


def dotted(loc: Loc) -> str:
    out = ""
    for elem in loc:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", elem):
            out += f".{elem}" if out else elem
        else:
            out += f"[{elem!r}]"
    return out


# -- one flow ----------------------------------------------------------------------------------------------


def edges(node: Node) -> Iterator[tuple[Loc, str]]:
    """The nodes `node` can go to, each with the field that names it."""
    if isinstance(node, MenuNode):
        for key, target in node.options.items():
            yield ("options", key), target
    elif isinstance(node, ConditionNode):
        for i, case in enumerate(node.cases):
            yield ("cases", i, "next"), case.next
        yield ("default",), node.default
    for attr in ("next", "on_fail", "on_error"):
        name = getattr(node, attr, None)
        if isinstance(name, str):
            yield (attr,), name


def _hint(name: str, names: Iterator[str] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _flow_problems(name: str, flow: Flow, known: KnownTargets, flow_names: frozenset[str],
                   variables: frozenset[str]) -> list[Problem]:
    base: Loc = ("flows", name)
    problems: list[Problem] = []
    if flow.start not in flow.nodes:
        problems.append(((*base, "start"), f"start node {flow.start!r} is not a node of flow {name}"
                                           f"{_hint(flow.start, list(flow.nodes))}"))
    for node_name, node in flow.nodes.items():
        at: Loc = (*base, "nodes", node_name)
        for field, target in edges(node):
            if target not in flow.nodes:
                problems.append(((*at, *field), f"{target!r} is not a node of flow {name}"
                                                f"{_hint(target, list(flow.nodes))}"))
        problems += [((*at, *field), msg) for field, msg in _target_problems(node, known, flow_names)]
        problems += [((*at, *field), msg) for field, msg in _variable_problems(node, variables)]
    if flow.start in flow.nodes:
        reached = _reachable(flow, flow.start)
        for node_name in flow.nodes:
            if node_name not in reached:
                problems.append(((*base, "nodes", node_name),
                                 f"node {node_name!r} cannot be reached from the start node {flow.start!r}"))
    graph = {n: [t for _, t in edges(node) if t in flow.nodes and not waits_for_input(flow.nodes[t])]
             for n, node in flow.nodes.items() if not waits_for_input(node)}
    for cycle in _cycles(graph):
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(((*base, "nodes", cycle[0]),
                         f"loop without input: {path}; a caller would go round it forever "
                         "(put a menu, collect or language choice on the way)"))
    return problems


def _reachable(flow: Flow, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for _, target in edges(flow.nodes[todo.pop()]):
            if target in flow.nodes and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _target_problems(node: Node, known: KnownTargets, flow_names: frozenset[str]) -> Iterator[tuple[Loc, str]]:
    if isinstance(node, RouteNode):
        kind, name = node.to.kind, node.to.name
        what: str = kind
        names: frozenset[str] | None = {
            "queue": known.queues, "user": known.users, "extension": known.extensions,
            "voicemail": known.mailboxes, "flow": flow_names,
        }.get(kind)
        if kind == "voicemail":
            what = "voicemail box"
        if kind == "endpoint":
            names, name, what = known.endpoints, name.split("/", 1)[0], "endpoint"
        if names is not None and name not in names:
            yield ("to",), f"there is no {what} {name!r}{_hint(name, sorted(names))}"
        if kind == "number" and known.dialable is not None and not known.dialable(name):
            yield ("to",), f"the dial plan has no route for the number {name!r}"
    elif isinstance(node, ConditionNode):
        for i, case in enumerate(node.cases):
            cond = case.when
            if isinstance(cond, HoursCondition) and known.schedules is not None and cond.hours not in known.schedules:
                yield ("cases", i, "when", "hours"), (f"there is no schedule {cond.hours!r}"
                                                     f"{_hint(cond.hours, sorted(known.schedules))}")
            if isinstance(cond, CallerInCondition) and known.lists is not None and cond.caller_in not in known.lists:
                yield ("cases", i, "when", "caller_in"), (f"there is no list {cond.caller_in!r}"
                                                         f"{_hint(cond.caller_in, sorted(known.lists))}")


# -- variables --------------------------------------------------------------------------------------------


def _assigned(flows: Mapping[str, Flow]) -> frozenset[str]:
    names: set[str] = set()
    for flow in flows.values():
        for node in flow.nodes.values():
            if isinstance(node, CollectNode):
                names.add(node.variable)
            elif isinstance(node, HttpNode):
                names.update(node.extract)
    return frozenset(names)


def _prompt_texts(field: str, prompt: Prompt | None) -> Iterator[tuple[Loc, str]]:
    if prompt is not None and prompt.text is not None:
        for lang, text in prompt.text.items():
            yield (field,) if lang == "*" else (field, lang), text


def _texts(node: Node) -> Iterator[tuple[Loc, str]]:
    """Every template in `node`, with its field."""
    if isinstance(node, SayNode):
        yield from _prompt_texts("text", node.prompt)
    elif isinstance(node, MenuNode | CollectNode):
        yield from _prompt_texts("prompt", node.prompt)
        yield from _prompt_texts("invalid", node.invalid)
        yield from _prompt_texts("timeout_prompt", node.timeout_prompt)
    elif isinstance(node, LanguageNode) and node.prompt is not None:
        for lang, text in node.prompt.items():
            yield ("prompt", lang), text
    elif isinstance(node, HttpNode):
        yield ("url",), node.url
        for key, text in (node.body or {}).items():
            yield ("body", key), text
        if node.say is not None:
            yield from _prompt_texts("say", Prompt(text=node.say))
    elif isinstance(node, RouteNode):
        yield from _prompt_texts("message", node.message)


def _variable_problems(node: Node, variables: frozenset[str]) -> Iterator[tuple[Loc, str]]:
    if isinstance(node, HttpNode):
        extracted = frozenset(node.extract)
        variables = variables | extracted  # its own `say` reads what it just extracted
    for field, text in _texts(node):
        for name in sorted(template_variables(text) - variables):
            yield field, f"{{{name}}} reads a variable that nothing sets{_hint(name, sorted(variables))}"
    if isinstance(node, ConditionNode):
        for i, case in enumerate(node.cases):
            cond = case.when
            if isinstance(cond, VariableCondition) and cond.var not in variables:
                yield ("cases", i, "when", "var"), (f"variable {cond.var!r} is set by nothing"
                                                    f"{_hint(cond.var, sorted(variables))}")


# -- loops ------------------------------------------------------------------------------------------------


def _flow_cycles(flows: Mapping[str, Flow]) -> list[Problem]:
    """Flows that reach a `flow:` route from their start without input, in a cycle."""
    graph: dict[str, list[str]] = {}
    via: dict[tuple[str, str], str] = {}
    for name, flow in flows.items():
        graph[name] = []
        if flow.start not in flow.nodes:
            continue
        for node_name in _reachable_without_input(flow):
            node = flow.nodes[node_name]
            if isinstance(node, RouteNode) and node.to.kind == "flow" and node.to.name in flows:
                if node.to.name not in graph[name]:
                    graph[name].append(node.to.name)
                    via[(name, node.to.name)] = node_name
    problems: list[Problem] = []
    for cycle in _cycles(graph):
        steps = [f"{a} (node {via[(a, b)]})" for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
        first = via[(cycle[0], cycle[1 % len(cycle)])]
        problems.append((("flows", cycle[0], "nodes", first, "to"),
                         f"flows route to each other without input: {' -> '.join(steps)} -> {cycle[0]}; "
                         "a caller would go round them forever (put a menu, collect or language choice on the way)"))
    return problems


def _reachable_without_input(flow: Flow) -> list[str]:
    """Nodes reached from `start` through nodes that do not wait for the caller (in visiting order)."""
    if waits_for_input(flow.nodes[flow.start]):
        return []
    seen, order, todo = {flow.start}, [flow.start], [flow.start]
    while todo:
        for _, target in edges(flow.nodes[todo.pop()]):
            node = flow.nodes.get(target)
            if node is not None and target not in seen and not waits_for_input(node):
                seen.add(target)
                order.append(target)
                todo.append(target)
    return order


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan's algorithm, iteratively).

    Each cycle starts at the component's first vertex in `graph`'s order; edges to vertices outside the
    graph are ignored.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            successors = [w for w in graph[v] if w in graph]
            if i < len(successors):
                work.append((v, i + 1))
                w = successors[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                component: set[str] = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    order = {v: i for i, v in enumerate(graph)}
    cycles = []
    for component in components:
        start = min(component, key=order.__getitem__)
        if len(component) > 1 or start in graph[start]:
            cycles.append(_cycle_through(graph, start, component))
    cycles.sort(key=lambda c: order[c[0]])
    return cycles


def _cycle_through(graph: Mapping[str, list[str]], start: str, component: set[str]) -> list[str]:
    """A shortest cycle from `start` back to itself inside `component` (breadth first)."""
    parent: dict[str, str] = {}
    todo = [start]
    while todo:
        following: list[str] = []
        for v in todo:
            for w in graph[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if w in component and w not in parent:
                    parent[w] = v
                    following.append(w)
        todo = following
    raise AssertionError("a strongly connected component always has a cycle through each vertex")

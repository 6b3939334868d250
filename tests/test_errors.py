"""Every exception Hatif defines is in the `hatif.errors` family tree, and no class name is defined twice.

Both are read from the source with `ast` (nothing imported), so a new module cannot slip past.
"""

from __future__ import annotations

import ast
import builtins
from collections import defaultdict
from pathlib import Path

import pytest

import hatif.errors
from hatif.errors import HatifError

SRC = Path(hatif.errors.__file__).parent

# Names defined more than once today (issue 19). The list may only shrink: a name that is no longer
# defined twice fails the test until it is removed here.
KNOWN_DUPLICATES: dict[str, str] = {
    # acd.model's router events mirror hatif.events' of the same name; issue 11 replaces the former.
    "AgentStateChanged": "issue 11",
    "CallOffered": "issue 11",
    "CallTransferred": "issue 11",
    "CallbackRequested": "issue 11",
    # config.Media (settings) and sip.sdp.Media (an RFC 4566 media description).
    "Media": "issue 19",
}


def _classes() -> list[tuple[Path, ast.ClassDef]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found.extend((path, node) for node in ast.walk(tree) if isinstance(node, ast.ClassDef))
    return found


def _base_name(base: ast.expr) -> str:
    return base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""


def test_every_exception_derives_from_hatif_error() -> None:
    bases = {node.name: [_base_name(b) for b in node.bases] for _, node in _classes()}

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return True
        return name not in seen and any(is_exception(b, seen | {name}) for b in bases.get(name, []))

    def in_family(name: str, seen: frozenset[str] = frozenset()) -> bool:
        return name == HatifError.__name__ or (
            name not in seen and any(in_family(b, seen | {name}) for b in bases.get(name, [])))

    outside = [f"{path.relative_to(SRC)}:{node.lineno} {node.name}" for path, node in _classes()
               if is_exception(node.name) and not in_family(node.name)]
    assert outside == []


@pytest.mark.parametrize("name", ["Hangup", "Route"])
def test_the_names_that_meant_two_things_mean_one(name: str) -> None:
    assert sum(node.name == name for _, node in _classes()) <= 1


def test_no_class_name_is_defined_twice() -> None:
    """Private (`_`) names never leave their module, so only public names must be unique."""
    where: defaultdict[str, list[str]] = defaultdict(list)
    for path, node in _classes():
        if not node.name.startswith("_"):
            where[node.name].append(f"{path.relative_to(SRC)}:{node.lineno}")
    twice = {name: places for name, places in where.items() if len(places) > 1}
    assert {n: p for n, p in twice.items() if n not in KNOWN_DUPLICATES} == {}
    assert sorted(set(KNOWN_DUPLICATES) - set(twice)) == [], "no longer duplicated: remove from the list"

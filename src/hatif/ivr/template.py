"""Text templates of IVR flows: `Order {order} is {status}`, `http://host/orders/{order}`.

A template is plain text with `{name}` placeholders for call variables; `{{` and `}}` stand for literal
braces. Nothing else is allowed between braces (no attribute access, indexing or format specs as with
`str.format`), so a template written in the configuration can only ever read a variable's text. A
placeholder whose variable is unset expands to the empty string.

Templates are parsed when the configuration is loaded (`parse_template` raises `ValueError` naming the
problem) and expanded per call with `render`; URL templates expand with every value percent-quoted, so
digits a caller typed can never add a path segment, a query or a host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import quote

VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""A variable name: a letter or underscore, then letters, digits, underscores (up to 64)."""

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple[str | tuple[str], ...]:
    """The template as literal strings and 1-tuples naming variables; `ValueError` says what is wrong."""
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        literal.append(text[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif token in ("{", "}"):
            raise ValueError(f"unmatched {token!r} at position {m.start()} (write {token * 2!r} for a literal brace)")
        else:
            name = m.group(1).strip()
            if not VARIABLE.fullmatch(name):
                raise ValueError(f"{{{m.group(1)}}} at position {m.start()} is not a variable name "
                                 "(letters, digits and _; write '{{' for a literal brace)")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((name,))
    literal.append(text[pos:])
    if any(literal):
        parts.append("".join(literal))
    return tuple(parts)


def template_variables(text: str) -> frozenset[str]:
    """The variable names a (valid) template refers to."""
    return frozenset(p[0] for p in parse_template(text) if isinstance(p, tuple))


def render(text: str, values: Mapping[str, str], *, url: bool = False) -> str:
    """Expand a template; with `url`, every value is percent-quoted (RFC 3986, nothing left unescaped)."""
    out: list[str] = []
    for part in parse_template(text):
        if isinstance(part, str):
            out.append(part)
        else:
            value = values.get(part[0], "")
            out.append(quote(value, safe="") if url else value)
    return "".join(out)

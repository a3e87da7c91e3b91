"""A griffe extension for the API reference: Sphinx roles in scrub's docstrings rendered as markdown.

scrub's docstrings cross-reference with Sphinx roles (``:func:`scrub.run```, ``:class:`~scrub.Result```).
mkdocstrings renders markdown, where these would show as literal text. This extension rewrites each
role before rendering: to a link (``[`Result`][scrub.Result]``) when the target is an object the
reference documents with a ``:::`` directive, and to inline code otherwise, so that a role never
gives a broken link (which ``mkdocs build --strict`` would reject).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

REFERENCE = Path(__file__).resolve().parent / "reference"
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([\w.]+)(\(\))?`")


def documented() -> set[str]:
    """The identifiers the reference pages render (their ``:::`` directives)."""
    out: set[str] = set()
    for page in REFERENCE.glob("*.md"):
        out |= set(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.MULTILINE))
    return out


def convert(text: str, targets: set[str], module: str = "scrub") -> str:
    """``text`` with every Sphinx role replaced by a link or inline code."""

    def one(m: re.Match) -> str:
        short, target, call = m.group(1), m.group(2), m.group(3) or ""
        shown = (target.rsplit(".", 1)[-1] if short else target) + call
        for candidate in (target, f"scrub.{target}", f"{module}.{target}"):
            if candidate in targets:
                return f"[`{shown}`][{candidate}]"
        return f"`{shown}`"

    return ROLE.sub(one, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the docstrings of every object of a package once it is loaded."""

    def __init__(self) -> None:
        self.targets = documented()

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()

        def walk(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                module = obj.module.path if hasattr(obj, "module") else "scrub"
                obj.docstring.value = convert(obj.docstring.value, self.targets, module)
            for member in obj.members.values():
                if not member.is_alias:
                    walk(member)

        walk(pkg)

"""Griffe extension for the API reference: reST in the package's docstrings, rendered as Markdown.

The docstrings cross-reference with Sphinx roles (``:func:`x```, ``:class:`~a.b.C```) and open
literal blocks with ``::``.  Markdown knows neither, so before mkdocstrings renders a docstring
this extension turns every role into inline code wrapped in an optional cross-reference (a link
when the target is documented on the site, plain code otherwise, never a build warning) and
``text::`` into ``text:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc|const):`(?P<target>[^`]+)`")
LITERAL = re.compile(r"(?m)^(?P<text>.*\S)::$")
BARE_LITERAL = re.compile(r"(?m)^[ \t]*::[ \t]*$\n?")
LIST_ITEM = re.compile(r"(?:\d+\.|[-*]) +(?=\S)")


def _identifier(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as seen from ``obj``'s docstring, or None when unknown."""
    target = target.lstrip(".")
    if target.startswith("neurofptt."):
        return target
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            scope = scope.parent
            continue
        return f"{path}.{rest}" if rest else path
    return None


def _reindent_lists(text: str) -> str:
    """Move the content of every top-level list item to column 4, where Markdown expects it.

    reST aligns an item's continuation lines and the literal blocks inside it with the text after
    the marker (column 3 after ``1. ``, 2 after ``* ``); Markdown needs 4, and 8 for a code block
    inside an item, or it ends the list and renumbers the next item from 1."""
    out: list[str] = []
    offset = 0  # content column of the current list item, 0 outside a list
    previous_blank = True
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        marker = LIST_ITEM.match(line)
        if not stripped:
            out.append(line)
            previous_blank = True
            continue
        if marker:
            offset = len(marker.group(0))
            out.append(line)
        elif offset and indent >= offset:
            out.append(" " * (4 + indent - offset) + stripped)
        else:
            if indent == 0 and previous_blank:
                offset = 0
            out.append(line)
        previous_blank = False
    return "\n".join(out)


def _rewrite(obj: griffe.Object, text: str) -> str:
    def role(match: re.Match[str]) -> str:
        target = match["target"].strip()
        if "<" in target and target.endswith(">"):  # `title <target>`
            title, _, target = target[:-1].partition("<")
            title = title.strip()
        else:
            title = target[1:].rsplit(".", 1)[-1] if target.startswith("~") else target
        target = target.lstrip("~")
        code = f"<code>{title}</code>"
        ident = _identifier(obj, target)
        if ident is None or not ident.startswith("neurofptt"):
            return code
        return f'<autoref identifier="{ident}" optional>{code}</autoref>'

    text = _reindent_lists(ROLE.sub(role, text))
    text = BARE_LITERAL.sub("", text)
    return LITERAL.sub(lambda m: m["text"] + ":", text)


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite every docstring of the loaded package once it is complete, and document each
    object once: a name that a package re-exports from the project is shown in the module that
    defines it, not again among the package's members."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        root = pkg.path

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)
                elif obj.is_module and member.target_path.startswith(f"{root}."):
                    member.public = False

        visit(pkg)

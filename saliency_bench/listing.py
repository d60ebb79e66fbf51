"""``saliency-bench list``: one line per registered item, fitted to the terminal; details of one.

``list [KIND] [PATTERN]`` prints a name, a kind and the first line of the description per item,
the description cut with an ellipsis at its end where the line would not fit (names never cut).
``list KIND NAME`` with an exact name prints everything about it: parameters or options with
their defaults, views, the whole docstring and where it comes from (registry source, file:line).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

from . import registry
from .kinds import KINDS

WILDCARDS = set("*?[")


def _patterns(pattern: str) -> list[str]:
    return [p.strip() for p in (pattern or "*").split(",") if p.strip()] or ["*"]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(registry.fnmatch.fnmatchcase(name, p) for p in patterns)


def is_exact(pattern: str) -> bool:
    """An exact name (no wildcard, no comma): ``list`` prints the item's details."""
    return bool(pattern) and pattern != "*" and "," not in pattern and not (WILDCARDS & set(pattern))


def item_kind(kind: str, obj: Any) -> str:
    """The short kind of an entry: ``heatmap``, ``point``, ``variant of mask``; the ground truth a
    benchmark needs; ``model`` / ``dataset``."""
    if kind == "methods":
        base = getattr(obj, "base", None)
        return f"variant of {base}" if base else str(getattr(obj, "kind", "method"))
    if kind == "benchmarks":
        needs = tuple(getattr(obj, "needs", ()) or ())
        extra = "model in the loop" if getattr(obj, "uses_model", False) else ""
        base = getattr(obj, "base", None)
        parts = ([f"variant of {base}"] if base else []) + (["needs " + "+".join(needs)] if needs else []) + (
            [extra] if extra else [])
        return ", ".join(parts) or "benchmark"
    return kind[:-1]


def _signature_defaults(fn: Callable) -> dict[str, Any]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return {}
    return {k: (p.default if p.default is not inspect.Parameter.empty else "(required)")
            for k, p in sig.parameters.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and k not in ("self",)}


def _where(obj: Any) -> str:
    """``file:line`` of the function or class behind an entry."""
    target = getattr(obj, "fn", None) or obj
    target = inspect.unwrap(target) if callable(target) else target
    try:
        path = inspect.getsourcefile(target) or inspect.getfile(target)
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return ""
    mod = getattr(target, "__module__", "") or ""
    qual = getattr(target, "__qualname__", "") or getattr(target, "__name__", "")
    return f"{mod}.{qual} ({path}:{line})" if mod else f"{path}:{line}"


def details(kind: str, e: Any, short: Callable[[Any], str] = repr) -> list[tuple[str, str]]:
    """(label, text) pairs describing one entry; ``short`` formats option values."""
    obj = e.obj
    rows: list[tuple[str, str]] = [("name", e.name), ("kind", item_kind(kind, obj))]
    if kind == "methods":
        defaults = getattr(obj, "defaults", None) or {}
        params = {**defaults, **(getattr(obj, "params", None) or {})}
        fixed = {k for k, v in params.items() if k not in defaults or repr(defaults[k]) != repr(v)}
        mark = f"  (fixed by the variant of {obj.base})" if getattr(obj, "base", None) else ""
        rows.append((f"parameters (-p {e.name}.NAME=VALUE)",
                     "\n".join(f"{k} = {short(v)}" + (mark if k in fixed else "") for k, v in params.items())
                     or "none"))
        views = getattr(obj, "views", None) or {}
        rows.append(("views", "\n".join(f"{k}: {getattr(v, '__qualname__', repr(v))}" for k, v in views.items())
                     or "none (the method gets only the resized input)"))
        doc = getattr(obj, "doc", "") or ""
    elif kind == "benchmarks":
        options = getattr(obj, "defaults", None) or {}
        rows.append((f"options (-B {e.name}.OPTION=VALUE)",
                     "\n".join(f"{k} = {short(v)}" for k, v in options.items()) or "none"))
        cols = getattr(obj, "columns", ()) or ()
        rows.append(("columns", ", ".join(c if isinstance(c, str) else str(c.get("key", c)) if isinstance(c, dict)
                                          else str(c) for c in cols) or "–"))
        rows.append(("scores", ", ".join(getattr(obj, "accepts", ()) or ()) or "–"))
        doc = inspect.getdoc(obj) or ""
    else:
        rows.append(("parameters", "\n".join(f"{k} = {short(v)}" for k, v in _signature_defaults(obj).items())
                     or "none"))
        doc = inspect.getdoc(obj) or ""
    rows.append(("source", e.source))
    where = _where(obj)
    if where:
        rows.append(("defined in", where))
    rows.append(("description", inspect.cleandoc(doc) if doc else "–"))
    return rows


def reflow(doc: str) -> list[str]:
    """A docstring's paragraphs, each on one line (the terminal wraps them at words); lines that
    start a list item or are indented stay lines of their own."""
    paras: list[str] = []
    cur: list[str] = []
    for line in inspect.cleandoc(doc).splitlines():
        if not line.strip():
            if cur:
                paras.append(" ".join(cur))
                cur = []
            paras.append("")
            continue
        if line.startswith((" ", "-", "*")) and cur:
            paras.append(" ".join(cur))
            cur = []
        cur.append(line.strip() if not line.startswith(" ") else line)
    if cur:
        paras.append(" ".join(cur))
    return paras


def print_details(kind: str, e: Any, console: Any, short: Callable[[Any], str] = repr) -> None:
    from rich.padding import Padding
    from rich.text import Text

    rows = details(kind, e, short)
    info = dict(rows)
    console.print(Text.assemble((f"{kind[:-1]} ", "dim"), (e.name, "bold"), f"  ({info['kind']})"))
    for label, text in rows:
        if label in ("name", "kind"):
            continue
        if label == "description":
            console.print(Text(f"{label}:", style="bold"))
            for para in reflow(text):
                console.print(Padding(Text(para), (0, 0, 0, 2), expand=False))
        elif "\n" in text or len(label) + len(text) + 2 > console.width:
            console.print(Text(f"{label}:", style="bold"))
            for line in text.splitlines():
                console.print(Padding(Text(line), (0, 0, 0, 2), expand=False))
        else:
            console.print(Text.assemble((f"{label}: ", "bold"), text))
    console.print()


KIND_WIDTH = 24  # at most (a longer kind is cut at its end)


def one_line_rows(kind: str, entries: list, width: int) -> list:
    """One rich Text per entry: name (never cut), kind (methods, benchmarks), the first line of
    the description cut with an ellipsis at its end to fit ``width``."""
    from rich.text import Text

    def cut(text: str, room: int) -> str:
        return text if len(text) <= room else (text[:max(room - 1, 0)] + "…" if room > 0 else "")

    nw = max([len(e.name) for e in entries] + [4])
    with_kind = kind in ("methods", "benchmarks")
    kinds = [item_kind(kind, e.obj) for e in entries]
    kw = min(max([len(k) for k in kinds] + [4]), KIND_WIDTH) if with_kind else 0
    rows = []
    for e, k in zip(entries, kinds):
        line = Text(e.name.ljust(nw), style="bold")
        used = nw
        if with_kind:
            line.append("  " + cut(k, kw).ljust(kw), style="cyan")
            used += 2 + kw
        desc = (e.doc or "–").replace("``", "")
        room = width - used - 2
        if room >= 8:
            line.append("  " + cut(desc, room))
        rows.append(line)
    return rows


def print_list(kind_arg: str, pattern: str, console: Any, short: Callable[[Any], str] = repr) -> int:
    """The ``list`` command: details for an exact name, else one line per matching item."""
    from rich.text import Text

    from .leaderboard import print_width

    kinds = KINDS if kind_arg == "all" else (kind_arg,)
    pats = _patterns(pattern)
    piped = not console.is_terminal
    width = print_width(console)
    saved = getattr(console, "_width", None)
    try:
        if piped:
            console.width = width
        if is_exact(pattern):
            found = [(k, e) for k in kinds for e in registry.REGISTRIES[k].entries() if e.name == pattern]
            for k, e in found:
                print_details(k, e, console, short)
            if found:
                return 0
            near = [e.name for k in kinds for e in registry.REGISTRIES[k].entries()
                    if pattern.lower() in e.name.lower()]
            console.print(Text(f"no {' or '.join(kinds)} named '{pattern}'"
                               + (f"; did you mean {', '.join(near[:8])}?" if near else
                                  " (wildcards list several: saliency-bench list methods 'grad*')")))
            return 2
        for kind in kinds:
            reg = registry.REGISTRIES[kind]
            entries = [e for e in reg.entries() if _matches(e.name, pats)]
            if not entries and kind_arg == "all":
                continue
            console.print(Text(f"{kind} ({len(entries)})", style="bold underline"))
            for line in one_line_rows(kind, entries, width):
                console.print(line, no_wrap=True, overflow="ellipsis", crop=True, soft_wrap=False)
            for name, why in reg.broken.items():
                console.print(Text.assemble(("broken plugin ", "red"), f"{name}: {why}"), soft_wrap=piped)
        console.print(Text(f"details: saliency-bench list {kind_arg if kind_arg != 'all' else 'KIND'} NAME",
                           style="dim"))
    finally:
        if piped:
            console._width = saved
    return 0

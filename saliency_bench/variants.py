"""Variants, pytest's way: a method (or benchmark) with some parameters fixed, and an id.

``mask[iterations=100]``, ``gradient[smooth=0.02]``, ``pointing[resolution=input]``: the
registered name, then the fixed parameters in brackets, ``name=value`` separated by commas,
values written as on the command line (``parse_value`` reads them back). A variant can be

* declared where its method is registered, with its own name or an id made from its
  parameters: ``@saliency_bench.method("mask", variants=[saliency_bench.param(game="preservation",
  id="mask_preserve")])`` (like ``pytest.param(..., id=...)``);
* asked for on the command line or in the TOML config: ``--methods 'gradient,gradient[smooth=0.02]'``;
* made by a grid of parameter values: ``-p 'mask.iterations=[100,300]'`` gives two rows.

This module is the bottom layer: it imports nothing of the project.
"""
from __future__ import annotations

import ast
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

GLOB = set("*?[")


def parse_value(text: str) -> Any:
    """``3`` -> 3, ``0.1`` -> 0.1, ``true`` -> True, ``[1,2]`` -> [1, 2]; anything else a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def format_value(value: Any) -> str:
    """A value as a variant id writes it; ``parse_value`` reads it back to an equal value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return value if parse_value(value) == value and not set(value) & set(",[]=") else json.dumps(value)
    if isinstance(value, (list, tuple)):  # inside a list, Python's literal syntax throughout
        return "[" + ",".join(json.dumps(v) if isinstance(v, str) else format_value(v) if isinstance(
            v, (list, tuple)) else repr(v) for v in value) + "]"
    return repr(value)


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside brackets: ``'a,b[x=1,y=2]'`` -> ``['a', 'b[x=1,y=2]']``."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [t for t in out if t]


def partition_top(text: str, sep: str = "=") -> tuple[str, str, str]:
    """``str.partition`` at the first ``sep`` outside brackets."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            return text[:i], sep, text[i + 1:]
    return text, "", ""


def rsplit_top(text: str, sep: str = ".") -> tuple[str, str]:
    """``'gradient[smooth=0.02].layer'`` -> ``('gradient[smooth=0.02]', 'layer')``: the last
    ``sep`` outside brackets (``('', text)`` when there is none)."""
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        ch = text[i]
        if ch in "])":
            depth += 1
        elif ch in "[(":
            depth -= 1
        elif ch == sep and depth == 0:
            return text[:i], text[i + 1:]
    return "", text


def parse_variant_id(text: str) -> tuple[str, dict[str, Any]] | None:
    """``'mask[iterations=100,lr=0.05]'`` -> ``('mask', {'iterations': 100, 'lr': 0.05})``; None
    when ``text`` is not a variant id (no brackets, or brackets without ``name=value``: then it is
    a shell pattern such as ``mask[_]*``)."""
    text = text.strip()
    if not text.endswith("]") or "[" not in text:
        return None
    root, inner = text[: text.index("[")], text[text.index("[") + 1: -1]
    if not root or any(c in GLOB for c in root):
        return None
    params: dict[str, Any] = {}
    for item in split_top(inner):
        k, sep, v = item.partition("=")
        if not sep or not k.strip().isidentifier():
            return None
        params[k.strip()] = parse_value(v)
    return (root, params) if params else None


def variant_id(root: str, params: Mapping[str, Any]) -> str:
    if not params:
        return root
    return f"{root}[" + ",".join(f"{k}={format_value(v)}" for k, v in params.items()) + "]"


@dataclass(frozen=True)
class param:  # noqa: N801 - named like pytest.param, which it mirrors
    """A declared variant: ``param(top_k=5, l1=1e-3, id="mask_top5", doc="...")``."""

    values: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    doc: str = ""

    def __init__(self, id: str | None = None, doc: str = "", **values: Any) -> None:  # noqa: A002
        object.__setattr__(self, "values", dict(values))
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "doc", doc)


def declared(variants: Mapping[str, Mapping[str, Any]] | Iterable[Any] | None) -> list[param]:
    """Normalise a ``variants=`` argument: ``{name: params}``, or a list of ``param`` / dicts."""
    if not variants:
        return []
    if isinstance(variants, Mapping):
        return [param(id=k, **dict(v)) for k, v in variants.items()]
    return [v if isinstance(v, param) else param(**dict(v)) for v in variants]


def is_grid(value: Any, default: Any) -> bool:
    """A list given for a parameter whose default is not a list is a grid of values; for a
    list-valued parameter, a list of lists is."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    if isinstance(default, (list, tuple)):
        return all(isinstance(v, (list, tuple)) for v in value)
    return True


def grid(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Split ``values`` into fixed values and the combinations of the grid ones (``[{}]`` when
    there is no grid), in the order the parameters were given."""
    fixed = {k: v for k, v in values.items() if not is_grid(v, defaults.get(k))}
    axes = [(k, list(v)) for k, v in values.items() if is_grid(v, defaults.get(k))]
    combos = [dict(zip([k for k, _ in axes], c)) for c in itertools.product(*[v for _, v in axes])]
    return fixed, combos or [{}]


def param_sets(values: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A scope's parameters: one dict, or (TOML) a list of parameter sets."""
    if isinstance(values, Mapping):
        return [dict(values)]
    return [dict(v) for v in values]

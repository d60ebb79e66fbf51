"""The plan of a run: which method rows and benchmark columns, which datasets, which views.

A request names methods by name, shell pattern or variant id (``gradient[smooth=0.02]``);
parameters come scoped (``-p 'mask*.iterations=100'``), and a list given for a scalar
parameter is a grid: one row per value, each a variant with its own id, cache key and store
rows. Benchmarks are chosen the same way (``pointing[resolution=input]``) and run only on the
datasets that carry the ground truth they need.
"""
from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import registry
from .config import RunConfig
from .contracts import Benchmark, Method
from .variants import GLOB, grid, param_sets, parse_variant_id, split_top, variant_id


@dataclass
class Plan:
    methods: list[Method]
    benchmarks: list[Benchmark]
    skipped: list[str]
    left_out: list[Method] = field(default_factory=list)  # heavy methods the CPU default leaves out
    left_out_benchmarks: list[Benchmark] = field(default_factory=list)  # likewise, benchmarks


# --------------------------------------------------------------------------------------------
# Requests: names, patterns, variant ids
# --------------------------------------------------------------------------------------------
def _tokens(request: str | Sequence[str] | None) -> list[str]:
    if request is None or request == "":
        return ["*"]
    if isinstance(request, str):
        return split_top(request) or ["*"]
    return [t for r in request for t in split_top(str(r))] or ["*"]


def is_default(request: str | Sequence[str] | None) -> bool:
    """No request: the default selection (every plugin that loads and runs by default; broken
    ones are reported, not raised). ``'*'`` is a request: everything, heavy or not."""
    return request is None or request == ""


def _matches(scope: str, name: str, root: str | None) -> bool:
    """Does a parameter scope name this row? A name matches the row of that name and the rows
    made from it by ids (``mask`` -> ``mask[lr=0.05]``, not the declared ``mask_top5``); a
    pattern matches names; a variant id that one row only."""
    if scope == name or scope == root:
        return True
    if parse_variant_id(scope) is not None:
        return False
    return fnmatch.fnmatchcase(name, scope) or (root is not None and fnmatch.fnmatchcase(root, scope))


def select_methods(request: str | Sequence[str] | None, *, skip_broken: bool = False) -> list[Method]:
    """The methods a request names, in request order, no repeats. A token that is a variant id
    of a registered method (``mask[iterations=100]``) means that variant; any other token is a
    shell pattern over the registered names (declared variants included)."""
    out: dict[str, Method] = {}
    if is_default(request):  # every method that runs by default
        every = (registry.methods.get(n) for n in registry.methods.select("*", skip_broken=True))
        return [m for m in every if getattr(m.fn, "__saliency_bench_default__", True)]
    for tok in _tokens(request):
        vid = parse_variant_id(tok)
        if vid is not None and vid[0] in registry.methods.names():
            m = registry.methods.get(vid[0]).variant(**vid[1])
            out.setdefault(m.name, m)
            continue
        for n in registry.methods.select(tok, skip_broken=skip_broken):
            out.setdefault(n, registry.methods.get(n))
    return list(out.values())


def apply_params(methods: Sequence[Method], params: dict[str, Any]) -> list[Method]:
    """Scoped parameters onto the methods, grids expanded into variants.

    ``"*"`` sets a parameter on every method that has it; a scope (name, pattern, variant id)
    sets it on the methods it matches, and must match one; a parameter a matched method lacks is
    an error when the scope names that method exactly. A variant's own id parameters win.
    """
    used: set[str] = set()
    rows: dict[str, Method] = {}
    for m in methods:
        sets: list[dict[str, Any]] = [{}]
        for scope, values in params.items():
            if scope == "*":
                scoped = [{k: v for k, v in s.items() if k in m.defaults} for s in param_sets(values)]
            elif _matches(scope, m.name, m.root or m.name):
                used.add(scope)
                exact = not (set(scope) & GLOB) or parse_variant_id(scope) is not None
                scoped = []
                for s in param_sets(values):
                    unknown = sorted(set(s) - set(m.defaults))
                    if unknown and exact:
                        m.with_params(**s)  # raises, naming the parameters the method takes
                    scoped.append({k: v for k, v in s.items() if k in m.defaults})
            else:
                continue
            sets = [{**a, **b} for a in sets for b in scoped]
        many_sets = len(sets) > 1
        for s in sets:
            s = {k: v for k, v in s.items() if k not in m.id_params}
            fixed, combos = grid(s, m.defaults)
            base = m.with_params(**fixed)
            for combo in combos:
                # A grid value, or one of several parameter sets, makes a row of its own.
                extra = combo if not many_sets else {**fixed, **combo}
                row = base.variant(**extra) if extra else base
                if row.name in rows and rows[row.name].params != row.params:
                    raise ValueError(f"two rows would be named '{row.name}' with different parameters")
                rows.setdefault(row.name, row)
    unknown = sorted(set(params) - {"*"} - used)
    if unknown:
        raise ValueError(f"parameters given for method(s) not in the run: {', '.join(unknown)}")
    return list(rows.values())


# --------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------
def make_benchmark(name: str, seed: int, options: dict[str, Any]) -> Benchmark:
    """The benchmark ``name`` (or variant id ``pointing[resolution=input]``) with ``options``; an
    option it does not list in ``defaults`` is an error naming the ones it takes (a benchmark
    without ``defaults`` takes anything)."""
    vid = parse_variant_id(name)
    base, fixed = (vid[0], vid[1]) if vid is not None and vid[0] in registry.benchmarks.names() else (name, {})
    cls = registry.benchmarks.get(base)
    known = getattr(cls, "defaults", None)
    opts = {**options, **fixed}
    if known is not None:
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise ValueError(f"benchmark '{base}' has no option {', '.join(unknown)}; it takes: "
                             + ", ".join(f"{k}={v!r}" for k, v in known.items()))
    bench = registry.get_benchmark(base, **{"seed": seed, **opts})
    if fixed:
        bench.name = variant_id(base, fixed)
        bench.base = base
        bench.suffix = bench.name[len(base):]
    return bench


def select_benchmarks(request: str | Sequence[str] | None, options: dict[str, dict[str, Any]], seed: int,
                      *, skip_broken: bool = False) -> list[Benchmark]:
    """The benchmarks a request names (names, patterns, variant ids) with their options. With no
    request, those that run by default (``Benchmark.default``)."""
    names: list[str] = []
    if is_default(request):
        names = [n for n in registry.benchmarks.select("*", skip_broken=True)
                 if getattr(registry.benchmarks.get(n), "default", True)]
    for tok in [] if is_default(request) else _tokens(request):
        vid = parse_variant_id(tok)
        if vid is not None and vid[0] in registry.benchmarks.names():
            names.append(variant_id(*vid))
        else:
            names += registry.benchmarks.select(tok, skip_broken=skip_broken)
    names = list(dict.fromkeys(names))
    used: set[str] = set()
    benches = []
    for n in names:
        vid = parse_variant_id(n)
        base = vid[0] if vid else n
        opts: dict[str, Any] = {}
        for scope, values in options.items():
            if _matches(scope, n, base):
                used.add(scope)
                opts.update(values)
        benches.append(make_benchmark(n, seed, opts))
    unknown = sorted(set(options) - used)
    if unknown:
        raise ValueError(f"options given for benchmark(s) not in the run: {', '.join(unknown)}")
    return benches


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------
def make_plan(cfg: RunConfig, *, cpu_default: bool = False) -> Plan:
    """Methods x benchmarks of a run. ``cpu_default``: the run is on a CPU without
    ``--all-methods``; where it names no methods (benchmarks), those that declare a cost of a
    hundred passes per image or more are left out (listed in ``left_out``,
    ``left_out_benchmarks``; asked for by name or pattern, they run)."""
    default_m = is_default(cfg.methods)
    methods = apply_params(select_methods(cfg.methods, skip_broken=default_m), cfg.params)
    left_out: list[Method] = []
    if cpu_default and default_m:
        left_out = [m for m in methods if heavy(m)]
        methods = [m for m in methods if not heavy(m)]
    benches = select_benchmarks(cfg.benchmarks, cfg.benchmark_options, cfg.seed,
                                skip_broken=is_default(cfg.benchmarks))
    left_out_b: list[Benchmark] = []
    if cpu_default and is_default(cfg.benchmarks):
        left_out_b = [b for b in benches if (b.cost or 0) >= HEAVY_PASSES]
        benches = [b for b in benches if (b.cost or 0) < HEAVY_PASSES]
    skipped = [f"{m.name} x {b.name}: a {m.kind} method cannot be scored by {b.name}"
               for m in methods for b in benches if m.kind not in b.accepts]
    broken = [f"plugin {k}: {v}" for reg in (registry.methods, registry.benchmarks) for k, v in reg.broken.items()]
    return Plan(methods, benches, skipped + broken, left_out, left_out_b)


HEAVY_PASSES = 100  # a method (benchmark) of this many passes per image (sample) or more is left out of the CPU default


def cost(m: Method) -> float | None:
    """Forward(+backward) passes per image the method declares (``@method(cost=...)``), with its
    parameters: a number, or a function of the parameters."""
    c = getattr(m.fn, "__saliency_bench_cost__", None)
    if c is None:
        return None
    return float(c(**m.params) if callable(c) else c)


def heavy(m: Method) -> bool:
    c = cost(m)
    return c is not None and c >= HEAVY_PASSES


def benchmark_applies(bench: Benchmark, ds) -> str | None:
    """None when ``bench`` can score ``ds``; else why not (the ground truth it lacks). A dataset
    that does not say what it provides is scored sample by sample (``applies_to``)."""
    provides = getattr(ds, "provides", None)
    if provides is None:
        return None
    # A need "a|b" is met by either ground truth (pointing: masks, or boxes).
    missing = [n for n in bench.needs if not any(alt in provides for alt in n.split("|"))]
    if missing:
        return (f"{bench.name} needs {', '.join(missing)}, which {getattr(ds, 'name', '') or 'the dataset'} "
                f"does not provide (it has: {', '.join(provides) or 'nothing'})")
    return None


def benchmark_subset(bench: Benchmark, ds) -> str | None:
    """When ``bench`` scores only part of ``ds``, the dataset's words for that part (its
    ``subsets``: need -> description, e.g. the bundled sample's single-category images)."""
    subsets = getattr(ds, "subsets", None) or {}
    return next((subsets[n] for n in bench.needs if n in subsets), None)


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------
def _kwnames(fn) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _takes_kwargs(fn) -> bool:
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


def open_dataset(spec: str, cfg: RunConfig):
    name, sep, path = spec.partition(":")
    factory = registry.datasets.get(name)
    kwargs = dict(cfg.dataset_options)
    if cfg.split is not None:
        kwargs["split"] = cfg.split
    accepted = _kwnames(factory)
    if not _takes_kwargs(factory):
        unknown = sorted(set(kwargs) - accepted)
        if unknown and len(cfg.datasets) == 1:
            raise ValueError(f"dataset '{name}' has no option {', '.join(unknown)}; it takes: "
                             f"{', '.join(sorted(accepted - {'path'})) or 'none'}")
        # With several datasets an option goes to those that take it (check_dataset_options
        # made sure that one does).
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    if "seed" in accepted:
        kwargs.setdefault("seed", cfg.seed)
    ds = factory(path, **kwargs) if sep else factory(**kwargs)
    key = f"{name}-" + hashlib.sha256(json.dumps([path, kwargs], sort_keys=True, default=str).encode()).hexdigest()[:8]
    display = getattr(ds, "name", "") or name
    return ds, display, key


def check_dataset_options(cfg: RunConfig) -> None:
    """Every dataset option (and --split) must be taken by at least one dataset of the run."""
    options = set(cfg.dataset_options) | ({"split"} if cfg.split is not None else set())
    if len(cfg.datasets) < 2 or not options:
        return
    factories = [registry.datasets.get(spec.partition(":")[0]) for spec in cfg.datasets]
    if any(_takes_kwargs(f) for f in factories):
        return
    taken = set().union(*(_kwnames(f) for f in factories))
    unknown = sorted(options - taken)
    if unknown:
        raise ValueError(f"no dataset of the run takes the option {', '.join(unknown)}")


def view_plan(methods: Sequence[Method], benchmarks: Sequence[Benchmark] = ()) -> dict[tuple, tuple[Any, str]]:
    """The distinct views the methods and benchmarks need: ``{view key: (maker, view name)}``
    where ``maker.make_view(name, image, size)`` makes it; methods whose view keys are equal
    (the same function reading the same parameter values) share one computation per sample."""
    plan: dict[tuple, tuple[Any, str]] = {}
    for m in methods:
        for v in m.views:
            plan.setdefault(m.view_key(v), (m, v))
    for b in benchmarks:
        for v in getattr(b, "views", ()) or ():
            plan.setdefault(bench_view_key(b, v), (b, v))
    return plan


def bench_view_key(bench: Benchmark, view: str) -> tuple:
    return ("benchmark", type(bench).__module__, type(bench).__qualname__, view,
            json.dumps(getattr(bench, "options", {}), sort_keys=True, default=str))

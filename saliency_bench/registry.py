"""Registries of methods, models, datasets and benchmarks, filled from entry points.

Every plugin, built-in or third-party, comes through the same door: an entry point in one of
the groups ``saliency_bench.methods``, ``saliency_bench.models``, ``saliency_bench.datasets``,
``saliency_bench.benchmarks``. An entry point may name

* a **module**: everything in it decorated with ``@saliency_bench.method`` (``model``,
  ``dataset``, ``benchmark``) registers, the way pytest loads a plugin module; or
* an **object**: a decorated object registers under its own name; a plain function or
  ``Benchmark`` subclass registers under the entry point's name.

The decorators return what they decorate unchanged (as timm's ``register_model`` does): a
plugin calls its own method as a plain function. ``@method`` checks the signature when it
registers, and registers the variants declared with it (``variants=[param(..., id=...)]``).

``--plugin FILE.py`` loads a single file the same way. Names are selected with shell
wildcards (``'grad*,mask*'``). A name registered twice fails, naming both sources. A plugin
that fails to import is remembered, not raised: it breaks only when a selection names it, and
a selection that matches nothing names every plugin that failed to load.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import inspect
import sys
import types
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from .contracts import HEATMAP, Benchmark, Method, method_from_function
from .kinds import KINDS
from .variants import declared, param  # noqa: F401 - param is part of the public API

_MARK = "__saliency_bench_plugin__"


class RegistryError(LookupError):
    pass


class PluginError(RegistryError):
    """A selected plugin could not be loaded."""


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any  # Method (methods), factory callable (models, datasets), Benchmark class
    source: str

    @property
    def doc(self) -> str:
        d = self.obj.doc if isinstance(self.obj, Method) else inspect.getdoc(self.obj) or ""
        return d.strip().splitlines()[0] if d.strip() else ""


# --------------------------------------------------------------------------------------------
# Decorators: mark an object for the registry of its kind; the registry finds the mark.
# --------------------------------------------------------------------------------------------
def _mark(obj: Any, kind: str, name: str, entry: Any = None) -> Any:
    """Note on ``obj`` that it registers ``entry`` (default: itself) as ``name``."""
    marks = list(vars(obj).get(_MARK, ())) if hasattr(obj, "__dict__") else []
    marks.append((kind, name, obj if entry is None else entry))
    setattr(obj, _MARK, marks)
    return obj


def _marks(obj: Any) -> list[tuple[str, str, Any]]:
    """The registrations an object carries (its own, not a base class's)."""
    try:
        return list(vars(obj).get(_MARK, ()))
    except TypeError:  # no __dict__
        return []


def method(name: str | None = None, *, kind: str = HEATMAP, views: dict[str, Callable] | None = None,
           variants: Any = None, cost: float | Callable[..., float] | None = None,
           default: bool = True, baseline: bool = False) -> Callable[[Callable], Callable]:
    """Register ``fn(model, x, targets, *, param=default, ...)`` as a method; returns ``fn``.

    ``kind`` is ``"heatmap"`` (returns ``[B,h,w]`` at the method's own resolution) or
    ``"point"`` (returns ``[B,2]``). ``views`` maps a keyword of ``fn`` to a function that makes
    that input from the original image (see :class:`~saliency_bench.contracts.Method`).
    ``variants`` declares variants registered beside it: a list of
    ``saliency_bench.param(k=v, ..., id="name", doc="...")`` (or of dicts; without ``id`` the
    variant is named ``name[k=v,...]``), or ``{name: {k: v}}``. ``cost``: about how many
    forward(+backward) passes per image the method takes, a number or a function of its
    parameters (``lambda iterations, **_: iterations``); a CPU run with no ``--methods`` leaves
    out methods of a hundred or more, and says so. ``default=False``: the method runs only when
    a request names it (by name or pattern), not in a run that names no methods (the method
    packs: the field's methods beside ours when asked for). ``baseline=True``: a reference point
    (the centre), labelled as a baseline on the leaderboard and never marked best.
    """

    def wrap(fn: Callable) -> Callable:
        if cost is not None:
            fn.__saliency_bench_cost__ = cost
        if not default:
            fn.__saliency_bench_default__ = False
        if baseline:
            fn.__saliency_bench_baseline__ = True
        m = method_from_function(fn, name or fn.__name__, kind, views)
        _mark(fn, "methods", m.name, m)
        for v in declared(variants):
            var = m.variant(v.id, v.doc, **v.values)
            _mark(fn, "methods", var.name, var)
        return fn

    return wrap


def _simple(kind: str) -> Callable[[str | None], Callable[[Any], Any]]:
    def decorator(name: str | None = None) -> Callable[[Any], Any]:
        def wrap(obj: Any) -> Any:
            n = name or getattr(obj, "name", "") or obj.__name__
            if kind == "benchmarks" and not vars(obj).get("name"):
                obj.name = n
            return _mark(obj, kind, n)

        return wrap

    return decorator


model = _simple("models")
dataset = _simple("datasets")
benchmark = _simple("benchmarks")


# --------------------------------------------------------------------------------------------
class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.group = f"saliency_bench.{kind}"
        self._entries: dict[str, Entry] = {}
        self._broken: dict[str, str] = {}  # plugin name -> why it did not load
        self._loaded = False

    # -- filling ---------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=self.group):
            dist = f" from {ep.dist.name}" if getattr(ep, "dist", None) else ""
            source = f"entry point '{ep.name} = {ep.value}'{dist}"
            try:
                obj = ep.load()
            except Exception as e:  # a broken plugin must not break the others
                self._broken[ep.name] = f"{source} failed to load: {type(e).__name__}: {e}"
                continue
            self.add_from(obj, source, default_name=ep.name)

    def add_from(self, obj: Any, source: str, default_name: str | None = None) -> list[str]:
        """Register what ``obj`` contributes: a module's marked members, or one object."""
        added: list[str] = []
        if isinstance(obj, types.ModuleType):
            for value in list(vars(obj).values()):
                if isinstance(value, types.ModuleType):
                    continue
                added += [self.add(n, e, source) for k, n, e in _marks(value) if k == self.kind]
            return added
        marks = [(n, e) for k, n, e in _marks(obj) if k == self.kind]
        if marks:
            return [self.add(n, e, source) for n, e in marks]
        name = default_name or getattr(obj, "__name__", str(obj))
        if self.kind == "methods" and callable(obj) and not isinstance(obj, Method):
            obj = method_from_function(obj, name, HEATMAP)
        return [self.add(name, obj, source)]

    def add(self, name: str, obj: Any, source: str) -> str:
        self._load()
        old = self._entries.get(name)
        if old is not None:
            if old.obj is obj:
                return name
            raise RegistryError(
                f"{self.kind[:-1]} '{name}' is registered twice: by {old.source} and by {source}")
        self._entries[name] = Entry(self.kind, name, obj, source)
        return name

    def remove(self, name: str, obj: Any) -> None:
        """Take ``name`` out again if ``obj`` is what it holds (a function passed to
        :func:`saliency_bench.run` for one run)."""
        if name in self._entries and self._entries[name].obj is obj:
            del self._entries[name]

    # -- reading ---------------------------------------------------------------------------
    def names(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self) -> list[Entry]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]

    def broken_note(self) -> str:
        """``; plugins that failed to load: ...`` (empty when none failed): a name a user asks
        for may live in one of them."""
        if not self.broken:
            return ""
        return "; plugins that failed to load: " + "; ".join(self._broken.values())

    @property
    def broken(self) -> dict[str, str]:
        self._load()
        return dict(self._broken)

    def select(self, patterns: str | list[str] | None = "*", *, skip_broken: bool = False) -> list[str]:
        """Names matching comma-separated shell wildcards, in registry order, no repeats.

        A pattern that matches a plugin that failed to load raises :class:`PluginError`
        naming it (unless ``skip_broken``); a pattern that matches nothing raises too.
        """
        self._load()
        if patterns is None:
            patterns = "*"
        if isinstance(patterns, str):
            patterns = [p.strip() for p in patterns.split(",") if p.strip()]
        chosen: list[str] = []
        for pat in patterns:
            broken = [b for b in self._broken if fnmatch.fnmatchcase(b, pat)]
            if broken and not skip_broken:
                raise PluginError("; ".join(self._broken[b] for b in broken))
            hits = self.names(pat)
            if not hits and not broken:
                raise RegistryError(f"no {self.kind[:-1]} matches '{pat}'; known: "
                                    f"{', '.join(self.names()) or 'none'}{self.broken_note()}")
            chosen += [h for h in hits if h not in chosen]
        return chosen

    def get(self, name: str) -> Any:
        self._load()
        if name not in self._entries:
            if name in self._broken:
                raise PluginError(self._broken[name])
            self.select(name)  # raises with the list of known names, or names the broken plugin
        return self._entries[name].obj

    def source(self, name: str) -> str:
        self._load()
        return self._entries[name].source


REGISTRIES: dict[str, Registry] = {k: Registry(k) for k in KINDS}
methods, models, datasets, benchmarks = (REGISTRIES[k] for k in KINDS)


def own_code(obj: Any) -> bool:
    """Whether ``obj`` (a class, a function, or an instance of a class) is saliency_bench's own code,
    not a plugin's: what the harness may trust not to change the model or the process between the
    checks it makes after every plugin's call."""
    mod = obj.__module__ if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")) \
        else type(obj).__module__
    return mod == "saliency_bench" or str(mod).startswith("saliency_bench.")


def load_plugin_file(path: str | Path) -> dict[str, list[str]]:
    """Import one Python file and register everything decorated in it (``--plugin FILE``)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist")
    modname = f"saliency_bench_plugin_{path.stem}_{abs(hash(str(path))) & 0xFFFFFF:x}"
    if modname in sys.modules:
        mod = sys.modules[modname]
    else:
        spec = importlib.util.spec_from_file_location(modname, path)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as e:
            del sys.modules[modname]
            raise PluginError(f"plugin file {path} failed to load: {type(e).__name__}: {e}") from e
    return {kind: reg.add_from(mod, f"plugin file {path}") for kind, reg in REGISTRIES.items()}


# -- the doors ---------------------------------------------------------------------------------
def list_methods(pattern: str = "*") -> list[str]:
    return methods.names(pattern)


def get_method(name: str, **params: Any) -> Method:
    """The registered method ``name`` (or a variant id, ``mask[iterations=100]``) with ``params``
    overriding its defaults."""
    from .variants import parse_variant_id

    vid = parse_variant_id(name)
    if vid is not None and vid[0] in methods.names():
        return methods.get(vid[0]).variant(**vid[1]).with_params(**params)
    return methods.get(name).with_params(**params)


def get_model(name: str, **kwargs: Any):
    """The model ``name``; ``FAMILY:ARCH`` (``timm:resnet18``) calls the factory registered as
    ``FAMILY`` with the architecture as its first argument."""
    family, sep, arch = name.partition(":")
    if sep:
        return models.get(family)(arch, **kwargs)
    return models.get(name)(**kwargs)


def get_dataset(name: str, *args: Any, **kwargs: Any):
    return datasets.get(name)(*args, **kwargs)


def get_benchmark(name: str, **options: Any) -> Benchmark:
    return benchmarks.get(name)(**options)

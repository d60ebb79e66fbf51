"""Numba kernels, compiled at first use, with explicit dispatch.

A module that has compiled loops makes one :class:`Kernels` set and registers its plain-Python
functions on it (``@jit.kernel`` for entry points, ``@jit.helper`` for what they call); a caller
asks the set for a compiled entry point with ``jit.compiled(name)``. Numba is imported on that
first call only (importing the package stays cheap), and the compiled code is cached on disk
(``cache=True``), so only the first run ever pays for compilation.

Kernels call each other by name. The set compiles copies of its functions whose globals are a
private namespace (the module's names, with every registered name bound to its compiled
version): the module's own globals are never rewritten, and its plain functions stay plain
Python. A kernel calls only functions of its own set: numba's on-disk cache of a kernel is
invalidated by changes to its own file only, so a cached caller in one file would keep a stale
copy of a changed callee in another.
"""
from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Callable, Iterable


class Kernels:
    """The numba kernels and helpers of one module (see the module docstring)."""

    def __init__(self, module: str):
        self.module = module
        self._plain: dict[str, Callable] = {}
        self._fastmath: dict[str, frozenset[str]] = {}
        self._compiled: dict[str, Callable] | None = None
        self._lock = threading.Lock()

    def _register(self, fn: Callable) -> Callable:
        if fn.__module__ != self.module:
            raise ValueError(f"kernel {fn.__name__} of {fn.__module__} registered on {self.module}'s set")
        if self._compiled is not None:
            raise RuntimeError(f"{self.module}: kernel {fn.__name__} registered after compilation")
        self._plain[fn.__name__] = fn
        return fn

    def kernel(self, fn: Callable | None = None, *, fastmath: frozenset[str] = frozenset()) -> Callable:
        """Register an entry point (a function numba's ``nopython`` mode accepts). ``fastmath``:
        LLVM's flags for it (``{"nnan", "ninf"}`` lets a min/max reduction vectorise), for a kernel
        whose callers guarantee what the flags assume."""
        if fn is None:
            return lambda f: self.kernel(f, fastmath=fastmath)
        self._fastmath[fn.__name__] = frozenset(fastmath)
        return self._register(fn)

    def helper(self, fn: Callable) -> Callable:
        """Register a function that kernels call (compiled like a kernel; keep helpers small, so
        that LLVM inlines them: a call that is not inlined costs reference counting on every
        array argument, more than a small helper's body)."""
        return self._register(fn)

    def compiled(self, name: str) -> Callable:
        """The compiled version of the registered function ``name``."""
        return self._dispatchers()[name]

    def _dispatchers(self) -> dict[str, Callable]:
        """numba's dispatchers of the set, made once (numba compiles each at its first call)."""
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    self._compiled = self._compile()
        return self._compiled

    def cached(self) -> bool | None:
        """Whether numba's on-disk cache holds at least one of this set's entry points compiled
        for this machine from the current source (its first call then loads, not compiles);
        None when numba's cache cannot be read (another numba version, say). Compiles nothing."""
        dispatchers = self._dispatchers()
        try:
            from numba.core.registry import cpu_target

            magic = cpu_target.target_context.codegen().magic_tuple()
            for name in self._fastmath:  # the entry points
                code = dispatchers[name]._cache._cache_file._load_index()  # {} when absent or stale
                if any(key[1] == magic for key in code):
                    return True
            return False
        except Exception:  # pragma: no cover - numba's cache internals moved
            return None

    def _compile(self) -> dict[str, Callable]:
        import numba  # lazily: only scoring needs it

        namespace = dict(vars(sys.modules[self.module]))
        out: dict[str, Callable] = {}
        for name, fn in self._plain.items():
            copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
            copy.__qualname__, copy.__doc__, copy.__module__ = fn.__qualname__, fn.__doc__, fn.__module__
            flags = self._fastmath.get(name)
            out[name] = numba.njit(cache=True, nogil=True, **({"fastmath": set(flags)} if flags else {}))(copy)
        namespace.update(out)  # calls between kernels resolve here, when numba compiles them
        return out


def uncached(modules: Iterable[str]) -> list[str]:
    """The modules among ``modules`` (each with its :class:`Kernels` set as ``jit``) whose
    kernels numba has not cached for this machine yet: their first call compiles them (about half
    a minute for the localization benchmark's, on two cores). Imports the modules and numba,
    compiles nothing."""
    return [name for name in modules if importlib.import_module(name).jit.cached() is False]

"""Isolation: every method sees the model as it was loaded, and the process as it was.

A :class:`Guard` is made once per loaded model. It keeps the model's pristine state (a CPU copy
of every parameter and buffer, the module tree, modes, hooks, ``requires_grad`` flags) and the
process-wide state (grad mode, default dtype and device, deterministic algorithms, autocast,
anomaly mode, thread count, matmul precision, cuDNN/oneDNN flags, flushing of denormals,
saved-tensors hooks, torch function and dispatch modes, NumPy's error handling, "error"
warning filters, what the layer classes and their bases define, and the functions of
``torch``, ``torch.Tensor``, ``torch.autograd``, ``torch.nn.functional`` and NumPy). :meth:`Guard.verify` runs after every method call
and every benchmark that runs the model: cheap checks first (tensor version counters, data
pointers, object identities, hook dictionaries, mode flags) and one exact fingerprint of
every tensor's contents (two integer sums over its bytes, :mod:`saliency_bench.ops.checksum`,
which catch writes through ``.data`` that bump no version counter, down to one bit of one value,
and sign flips and permutations, which a norm misses); only when something differs are the
tensors compared with the pristine copy, the changes named, and the pristine state put back. The caller then fails what
ran on the changed model (its maps are neither scored nor cached).

What a method may do during its call: anything, as long as it puts it back (hooks removed,
modes and flags reset, context managers exited). What it leaves behind is restored and costs
the method that batch.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, methodcaller
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module_mod

from .ops.checksum import Checksums

# The hook dictionaries of a module: the ones a registration fills (checked), and their
# companions (restored with them).
_HOOKS = {"_forward_hooks": "forward hook", "_forward_pre_hooks": "forward pre-hook",
          "_backward_hooks": "backward hook", "_backward_pre_hooks": "backward pre-hook",
          "_state_dict_hooks": "state-dict hook", "_state_dict_pre_hooks": "state-dict pre-hook",
          "_load_state_dict_pre_hooks": "load-state-dict pre-hook",
          "_load_state_dict_post_hooks": "load-state-dict post-hook"}
_HOOK_COMPANIONS = ("_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks", "_global_forward_hooks_with_kwargs",
                 "_global_forward_hooks_always_called", "_global_module_registration_hooks",
                 "_global_parameter_registration_hooks", "_global_buffer_registration_hooks")
_MODULE_ATTRS = ("inplace",)  # plain attributes that change what a layer computes
MAX_NAMED = 3  # changes named in a reason; the rest are counted


def _where(name: str) -> str:
    return name or "(the network)"


# --------------------------------------------------------------------------------------------
# Process-wide torch state
# --------------------------------------------------------------------------------------------
def _autocast_nesting() -> int:
    n = torch.autocast_decrement_nesting()
    torch.autocast_increment_nesting()
    return n + 1


def _flag(obj: Any, attr: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    return (lambda: getattr(obj, attr)), (lambda v: setattr(obj, attr, v))


# The smallest float32 denormal, made from its bits (a float converted while denormals are
# flushed would be zero already): multiplied by one it stays nonzero unless they are flushed.
_DENORMAL = torch.tensor([1], dtype=torch.int32).view(torch.float32)


def _flushes_denormals() -> bool:
    return bool((_DENORMAL * 1.0).item() == 0.0)


def _error_filters() -> list:
    """The warning filters that turn a warning into an exception (a library's import adds
    'ignore' filters, never these; one left by a method makes later benchmarks raise)."""
    return [f for f in warnings.filters if f[0] == "error"]


def _set_error_filters(wanted: list) -> None:
    warnings.filters[:] = [f for f in warnings.filters if f[0] != "error" or f in wanted]
    mutated = getattr(warnings, "_filters_mutated", None)  # CPython's cache of the filters
    if mutated is not None:
        mutated()


_saved_hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
_pop_saved_hooks = getattr(torch._C._autograd, "_pop_saved_tensors_default_hooks", None)


def _saved_tensors_hooks_depth() -> int:
    """How many ``torch.autograd.graph.saved_tensors_hooks`` contexts are open (0 or 1 is all the
    public API lets one read: whether the innermost is set)."""
    return 0 if _saved_hooks is None or _saved_hooks(False) is None else 1


_C = torch._C
_MODE_STACKS = tuple((what, getattr(_C, length), getattr(_C, pop)) for what, length, pop in (
    ("torch function mode", "_len_torch_function_stack", "_pop_torch_function_stack"),
    ("torch dispatch mode", "_len_torch_dispatch_stack", "_pop_torch_dispatch_stack"))
    if hasattr(_C, length) and hasattr(_C, pop))


# Namespaces whose functions a method may patch (``torch.relu = ...``; NumPy's are what the
# benchmarks score with): each function is kept
# and put back. In ``torch.Tensor`` a new entry is one too (it shadows the C method of the same
# name) and is removed; in the modules, new entries are torch's own lazily imported submodules.
_NAMESPACES = (("torch.nn.functional", F, False), ("torch", torch, False), ("torch.autograd", torch.autograd, False),
               ("torch.Tensor", torch.Tensor, True), ("numpy", np, False))


def _process_entries() -> list[tuple[str, Callable[[], Any], Callable[[Any], None]]]:
    """(what, getter, setter) of every process-wide setting a method could leave changed."""
    det = (lambda: (torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled()),
           lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1]))
    anomaly = (lambda: (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
               lambda v: torch.set_anomaly_enabled(v[0], v[1]))
    entries = [
        ("grad mode", torch.is_grad_enabled, torch.set_grad_enabled),
        ("default dtype", torch.get_default_dtype, torch.set_default_dtype),
        ("default device", lambda: str(torch.get_default_device()), torch.set_default_device),
        ("deterministic algorithms (enabled, warn only)", *det),
        ("anomaly mode (enabled, check NaN)", *anomaly),
        ("number of threads", torch.get_num_threads, torch.set_num_threads),
        ("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
        ("autocast cache", torch.is_autocast_cache_enabled, torch.set_autocast_cache_enabled),
        ("oneDNN", *_flag(torch.backends.mkldnn, "enabled")),
        ("cuDNN", *_flag(torch.backends.cudnn, "enabled")),
        ("cuDNN benchmark", *_flag(torch.backends.cudnn, "benchmark")),
        ("cuDNN deterministic", *_flag(torch.backends.cudnn, "deterministic")),
        ("cuDNN TF32", *_flag(torch.backends.cudnn, "allow_tf32")),
        ("CUDA matmul TF32", *_flag(torch.backends.cuda.matmul, "allow_tf32")),
        ("CUDA matmul float16 reduced-precision reduction",
         *_flag(torch.backends.cuda.matmul, "allow_fp16_reduced_precision_reduction")),
        ("CUDA matmul bfloat16 reduced-precision reduction",
         *_flag(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction")),
        ("flushing of denormal floats", _flushes_denormals, torch.set_flush_denormal),
        # what NumPy does on a floating-point error: "raise" left on makes later scoring fail
        ("NumPy floating-point error handling", np.geterr, lambda v: np.seterr(**v)),
        ("warnings turned into errors", _error_filters, _set_error_filters),
    ]
    for dev in ("cpu", "cuda"):
        entries.append((f"{dev} autocast", lambda d=dev: (torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)),
                        lambda v, d=dev: (torch.set_autocast_enabled(d, v[0]), torch.set_autocast_dtype(d, v[1]))))
    return entries


class ProcessState:
    """The process-wide torch settings at load time; :meth:`check` names what differs now and
    :meth:`restore` puts it back."""

    def __init__(self) -> None:
        self.entries = _process_entries()
        self.saved = [get() for _, get, _ in self.entries]
        self.nesting = _autocast_nesting()
        self.namespaces = [(label, obj, {k: v for k, v in vars(obj).items() if callable(v) or whole}, whole)
                           for label, obj, whole in _NAMESPACES]
        self._ns_keys = [list(was) for _, _, was, _ in self.namespaces]  # for one C-speed comparison
        self._ns_values = [list(was.values()) for _, _, was, _ in self.namespaces]
        self.module_call = (nn.Module.__call__, nn.Module._call_impl)
        self.saved_hooks = _saved_tensors_hooks_depth()
        self.modes = [length() for _, length, _ in _MODE_STACKS]
        self.global_hooks = {k: dict(getattr(_module_mod, k)) for k in _GLOBAL_HOOKS if hasattr(_module_mod, k)}

    def check(self) -> list[str]:
        out = []
        for (what, get, _), was in zip(self.entries, self.saved):
            now = get()
            if now != was:
                out.append(f"{what} left at {_show(now)} (was {_show(was)})")
        for (label, obj, was, whole), keys, values in zip(self.namespaces, self._ns_keys, self._ns_values):
            now = vars(obj)
            if list(map(now.get, keys)) != values:  # identities first: a list comparison in C
                out += [f"{label}.{k} replaced" for k, v in was.items() if now.get(k, _ABSENT) is not v]
            if whole and len(now) != len(was):
                out += [f"{label}.{k} added" for k in now.keys() - was.keys()]
        if _saved_tensors_hooks_depth() != self.saved_hooks:
            out.append("saved-tensors hooks left on (torch.autograd.graph.saved_tensors_hooks)")
        for (what, length, _), was in zip(_MODE_STACKS, self.modes):
            if length() != was:
                out.append(f"{what} left entered ({length()} open, was {was})")
        if (nn.Module.__call__, nn.Module._call_impl) != self.module_call:
            out.append("torch.nn.Module.__call__ replaced")
        for k, d in self.global_hooks.items():
            g = getattr(_module_mod, k)
            if len(g) != len(d) or any(h not in d for h in g):
                out.append(f"global module hook left ({k.strip('_').replace('_', ' ')})")
        return out

    def restore(self) -> None:
        for (_, get, set_), was in zip(self.entries, self.saved):
            if get() != was:
                set_(was)
        while _autocast_nesting() > self.nesting:
            torch.autocast_decrement_nesting()
        torch.clear_autocast_cache()
        for _, obj, was, whole in self.namespaces:
            now = vars(obj)
            for k in (now.keys() - was.keys()) if whole else ():
                delattr(obj, k)
            for k, v in was.items():
                if now.get(k, _ABSENT) is not v:
                    setattr(obj, k, v)
        while _pop_saved_hooks is not None and _saved_tensors_hooks_depth() > self.saved_hooks:
            _pop_saved_hooks()
        for (_, length, pop), was in zip(_MODE_STACKS, self.modes):
            while length() > was:
                pop()
        nn.Module.__call__, nn.Module._call_impl = self.module_call
        for k, d in self.global_hooks.items():
            g = getattr(_module_mod, k)
            g.clear()
            g.update(d)


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_show(x) for x in v) + ")"
    return str(v)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
@dataclass
class _Tensor:
    """One parameter or buffer as loaded."""

    kind: str  # "parameter" | "buffer"
    name: str
    owner: nn.Module
    key: str
    obj: torch.Tensor  # the object the module held
    data: torch.Tensor  # an alias of its storage (``.data`` may be swapped under the object)
    pristine: torch.Tensor  # CPU copy
    requires_grad: bool
    version: int = 0
    ptr: int = 0


@dataclass
class _Module:
    name: str
    module: nn.Module
    training: bool
    children: dict
    parameters: dict
    buffers: dict
    hooks: dict  # attribute -> a copy of the dictionary
    full_backward: Any
    attrs: dict
    forward_in_dict: Any  # an instance attribute ``forward`` at load (normally absent)


_ABSENT = object()
_training = attrgetter("training")
_version = attrgetter("_version")
_requires_grad = attrgetter("requires_grad")
_grad = attrgetter("grad")
_tensor_hooks = attrgetter("_backward_hooks")
_instance_forward = methodcaller("get", "forward")


class ModelState:
    """A loaded model's pristine state, checked cheaply and restored when it changed."""

    def __init__(self, model) -> None:
        self.model = model
        self.net = model.net
        self.fields = dict(vars(model))
        self.mappings = {k: dict(v) for k, v in self.fields.items() if isinstance(v, dict)}
        self.modules: list[_Module] = []
        self.tensors: list[_Tensor] = []
        for name, m in self.net.named_modules(remove_duplicate=False):
            hooks = {a: dict(getattr(m, a)) for a in (*_HOOKS, *_HOOK_COMPANIONS) if hasattr(m, a)}
            self.modules.append(_Module(name, m, m.training, dict(m._modules), dict(m._parameters), dict(m._buffers),
                                        hooks, getattr(m, "_is_full_backward_hook", None),
                                        {a: getattr(m, a) for a in _MODULE_ATTRS if hasattr(m, a)},
                                        vars(m).get("forward", _ABSENT)))
            prefix = f"{name}." if name else ""
            for kind, d in (("parameter", m._parameters), ("buffer", m._buffers)):
                for key, t in d.items():
                    if t is None:
                        continue
                    self.tensors.append(_Tensor(kind, prefix + key, m, key, t, t.data,
                                                t.detach().to("cpu", copy=True), t.requires_grad))
        # Every class of the model's modules, and their bases up to nn.Module: what they define
        # (``forward``, ``_conv_forward``, ``__getattr__`` ...), patched on the class.
        classes = {c: None for m in self.net.modules() for c in type(m).__mro__ if issubclass(c, nn.Module)}
        self.classes = {c: dict(vars(c)) for c in classes}
        self._class_keys = [(c, list(d)) for c, d in self.classes.items()]
        self._class_values = [v for d in self.classes.values() for v in d.values()]
        self._class_sizes = [len(d) for d in self.classes.values()]
        self._mods = [rec.module for rec in self.modules]
        self._objs = [t.obj for t in self.tensors]
        self._attr_mods = [rec for rec in self.modules if rec.attrs]
        self._tree_dicts = [d for m in self._mods for d in (m._modules, m._parameters, m._buffers)]
        self._hook_dicts = [getattr(rec.module, a) for rec in self.modules for a in _HOOKS if hasattr(rec.module, a)]
        self.fingerprint = None
        self._mark()
        self.fingerprint = self._fingerprint()

    # -- cheap state -------------------------------------------------------------------------
    def _signature(self) -> tuple:
        """Every cheap fact at once, as flat lists of plain values (``map`` over precomputed
        lists, no Python loop body): modes, the module tree's object identities, hook counts,
        instance ``forward``s, tensors' version counters, data pointers, ``requires_grad``,
        gradients and tensor hooks, the model's attributes. Equal signatures: nothing changed
        that a method can reach without writing through ``.data`` (the fingerprint covers that)."""
        mods, objs = self._mods, self._objs
        return (list(map(_training, mods)),
                list(map(id, chain.from_iterable(map(dict.values, self._tree_dicts)))),
                list(map(len, self._hook_dicts)),
                list(map(_instance_forward, map(vars, mods))),
                list(map(_version, objs)), list(map(torch.Tensor.data_ptr, objs)),
                list(map(_requires_grad, objs)), list(map(_grad, objs)).count(None),
                list(map(_tensor_hooks, objs)).count(None),
                list(map(id, vars(self.model).values())))

    def _mark(self) -> None:
        for t in self.tensors:
            t.version, t.ptr = t.obj._version, t.obj.data_ptr()
        self.signature = self._signature()
        # Views of the storage as it is now: valid while no data pointer moves, which the
        # signature checks before every fingerprint.
        self._checksums = Checksums([t.data for t in self.tensors])

    def _fingerprint(self, fresh: bool = False) -> np.ndarray:
        """The exact checksums of every tensor's contents, a row per tensor of ``self.tensors``
        (``fresh``: over views made now, for when a data pointer may have moved)."""
        return (Checksums([t.data for t in self.tensors]) if fresh else self._checksums)()

    def check(self) -> list[str]:
        """What differs from the loaded model (empty: nothing)."""
        if self._signature() == self.signature and self._same_slow_facts():
            if np.array_equal(self._fingerprint(), self.fingerprint):
                return []
        return self._describe()

    def _same_slow_facts(self) -> bool:
        """The few facts outside the signature: the model's mappings, layer attributes
        (``inplace``), what the classes define, the hook dictionaries' identities."""
        return (all(self.fields[k] == d for k, d in self.mappings.items())
                and all(getattr(rec.module, a, _ABSENT) == v for rec in self._attr_mods for a, v in rec.attrs.items())
                and self._same_classes())

    def _same_classes(self) -> bool:
        """Every class entry the same object, and none added (identities: one list comparison)."""
        now = [v for c, keys in self._class_keys for v in map(vars(c).get, keys)]
        return now == self._class_values and list(map(len, map(vars, self.classes))) == self._class_sizes

    def _describe(self) -> list[str]:
        """What differs, named (the slow path, taken only when a cheap check differs)."""
        out: list[str] = []
        model = self.model
        if vars(model).keys() != self.fields.keys() or any(vars(model)[k] is not v for k, v in self.fields.items()):
            out += [f"model attribute '{k}' replaced" for k, v in self.fields.items() if vars(model).get(k) is not v]
        for k, d in self.mappings.items():
            if self.fields[k] == d:
                continue
            out.append(f"model attribute '{k}' modified")
        switched = [rec.name for rec in self.modules if rec.module.training != rec.training]
        for name in switched:  # the outermost modules that switched, with how many inside
            if name and any(name.startswith(o + ".") or not o for o in switched if o != name):
                continue
            inside = sum(1 for o in switched if o != name and (not name or o.startswith(name + ".")))
            mode = "train" if next(r.module for r in self.modules if r.name == name).training else "eval"
            out.append(f"module {_where(name)} switched to {mode} mode"
                       + (f" (with {inside} submodules)" if inside else ""))
        for rec in self.modules:
            m = rec.module
            where = _where(rec.name)
            if m._modules != rec.children or any(m._modules[k] is not v for k, v in rec.children.items()):
                out.append(f"submodule of {where} replaced or added")
            prefix = f"{rec.name}." if rec.name else ""
            for kind, now, was in (("parameter", m._parameters, rec.parameters), ("buffer", m._buffers, rec.buffers)):
                for k in sorted(now.keys() | was.keys()):
                    if k not in was:
                        out.append(f"{kind} {prefix}{k} added")
                    elif k not in now:
                        out.append(f"{kind} {prefix}{k} removed")
                    elif now[k] is not was[k]:
                        out.append(f"{kind} {prefix}{k} replaced by another object")
            for attr, what in _HOOKS.items():
                d = getattr(m, attr, None)
                if d is not None and (len(d) != len(rec.hooks[attr]) or (d and d.keys() != rec.hooks[attr].keys())):
                    out.append(f"{what} left on {where}")
            for a, v in rec.attrs.items():
                if getattr(m, a, _ABSENT) != v:
                    out.append(f"{a} of {where} set to {getattr(m, a, None)}")
            if vars(m).get("forward", _ABSENT) is not rec.forward_in_dict:
                out.append(f"forward of {where} replaced")
        for cls, was in self.classes.items():
            now, where = vars(cls), f"{cls.__module__}.{cls.__qualname__}"
            out += [f"{where}.{k} replaced" for k, v in was.items() if now.get(k, _ABSENT) is not v]
            out += [f"{where}.{k} added" for k in now.keys() - was.keys()]
        for t in self.tensors:
            o = t.obj
            if o.requires_grad != t.requires_grad:
                out.append(f"requires_grad of {t.kind} {t.name} changed to {o.requires_grad}")
            if o.grad is not None:
                out.append(f"gradient left on {t.kind} {t.name}")
            if getattr(o, "_backward_hooks", None):
                out.append(f"tensor hook left on {t.kind} {t.name}")
            if o.data_ptr() != t.ptr:
                out.append(f"{t.kind} {t.name} replaced (its data swapped)")
        # Contents: only an exact comparison with the pristine copy says what changed (an
        # in-place write of the same values is none).
        for t in self._changed_contents():
            if t.obj.data_ptr() == t.ptr:
                how = "modified in place" if t.obj._version != t.version else "modified in place (through .data)"
                out.append(f"{t.kind} {t.name} {how}")
        if not out:  # nothing differs after all: take the state as it is now as the reference
            self._mark()
            self.fingerprint = self._fingerprint()
        return out

    def _changed_contents(self) -> list[_Tensor]:
        """The tensors whose contents differ from the pristine copy, compared exactly; only
        candidates are compared: a version counter or data pointer that moved, a checksum that
        differs from the fingerprint's (an exact comparison of every tensor costs 100x more)."""
        fp = self._fingerprint(fresh=True)
        suspects = {id(t) for t in self.tensors if t.obj._version != t.version or t.obj.data_ptr() != t.ptr}
        if self.fingerprint is None or fp.shape != self.fingerprint.shape:
            suspects = {id(t) for t in self.tensors}
        else:
            differs = (fp != self.fingerprint).any(1).tolist()
            suspects |= {id(t) for t, d in zip(self.tensors, differs) if d}
        changed = []
        for t in self.tensors:
            if id(t) not in suspects:
                continue
            d = t.data
            if d.shape != t.pristine.shape or d.dtype != t.pristine.dtype or not torch.equal(d.cpu(), t.pristine):
                changed.append(t)
        return changed

    # -- restoring -----------------------------------------------------------------------------
    def restore(self) -> None:
        model = self.model
        for k in list(vars(model)):
            if k not in self.fields:
                delattr(model, k)
        vars(model).update(self.fields)
        for k, d in self.mappings.items():
            if self.fields[k] != d:
                self.fields[k].clear()
                self.fields[k].update(d)
        for cls, was in self.classes.items():
            now = vars(cls)
            for k in now.keys() - was.keys():
                delattr(cls, k)
            for k, v in was.items():
                if now.get(k, _ABSENT) is not v:
                    setattr(cls, k, v)
        for rec in self.modules:
            m = rec.module
            m.training = rec.training
            for attr, d in ((m._modules, rec.children), (m._parameters, rec.parameters), (m._buffers, rec.buffers)):
                if attr.keys() != d.keys() or any(attr[k] is not v for k, v in d.items()):
                    attr.clear()
                    attr.update(d)
            for attr, d in rec.hooks.items():
                cur = getattr(m, attr)
                if cur.keys() != d.keys():
                    cur.clear()
                    cur.update(d)
            if rec.full_backward is not None or hasattr(m, "_is_full_backward_hook"):
                m._is_full_backward_hook = rec.full_backward
            for a, v in rec.attrs.items():
                setattr(m, a, v)
            if vars(m).get("forward", _ABSENT) is not rec.forward_in_dict:
                if rec.forward_in_dict is _ABSENT:
                    del m.forward
                else:
                    m.forward = rec.forward_in_dict
        with torch.no_grad():
            for t in self.tensors:
                o = t.obj
                if o.data_ptr() != t.data.data_ptr() or o.dtype != t.data.dtype or o.shape != t.data.shape:
                    o.data = t.data
                if o.requires_grad != t.requires_grad:
                    o.requires_grad_(t.requires_grad)
                o.grad = None
                if getattr(o, "_backward_hooks", None):
                    o._backward_hooks = None
            for t in self._changed_contents():
                if t.data.shape != t.pristine.shape or t.data.dtype != t.pristine.dtype:
                    t.data = t.pristine.to(t.obj.device)
                    t.obj.data = t.data
                else:
                    t.data.copy_(t.pristine)
        self._mark()


class Guard:
    """The model and the process as loaded: :meth:`verify` after each call that may change them."""

    def __init__(self, model) -> None:
        self.process = ProcessState()
        self.model = ModelState(model)

    def verify(self) -> str | None:
        """None if nothing changed; else what changed (a sentence), with the pristine state
        already restored."""
        process = process_changes(self.process)
        model_changes = self.model.check()
        if model_changes:
            self.model.restore()
            if left := self.model.check():  # cannot happen unless restoring is broken; never let it pass
                raise RuntimeError("the model could not be restored: " + _listing(left))
        parts = (["changed the model: " + _listing(model_changes)] if model_changes else []) + \
            ([process] if process else [])
        return "; and ".join(parts) if parts else None


def process_changes(state: ProcessState) -> str | None:
    """What changed in the process since ``state`` was taken (a sentence, as :meth:`Guard.verify`
    says it), with the state restored; None if nothing did. For a process without a model: a
    scoring worker."""
    changes = state.check()
    if not changes:
        return None
    state.restore()
    if left := state.check():  # cannot happen unless restoring is broken; never let it pass silently
        raise RuntimeError("the process state could not be restored: " + _listing(left))
    return "changed the process state: " + _listing(changes)


def _listing(changes: list[str]) -> str:
    if len(changes) <= MAX_NAMED:
        return "; ".join(changes)
    return "; ".join(changes[:MAX_NAMED]) + f"; and {len(changes) - MAX_NAMED} more"

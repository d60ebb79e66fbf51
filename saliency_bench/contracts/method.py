"""The Method contract: a saliency method bound to its parameters, and the checks on what it returns.

Heatmaps are ``[B,h,w]`` at the method's own resolution (Grad-CAM 7x7, gradient 224x224;
higher = more salient; the harness never resizes them: each benchmark does, as its protocol
says); points ``[B,2]`` as ``(x, y)`` in the pixel coordinates of the *network input*.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from .model import Model
from ..threads import one_thread

HEATMAP = "heatmap"
POINT = "point"


class MethodOutputError(ValueError):
    """A method returned something that is not a valid batch of heatmaps or points."""


@dataclass
class Method:
    """A method bound to its parameters: ``explain(model, x, targets)``, batched, on the device.

    ``x`` is the normalised input ``[B,3,H,W]``; ``targets`` a
    :class:`~saliency_bench.targets.Targets` (row ``i``: the class set of sample ``i``, scored
    as one by ``targets.score(logits)``). The function may return the maps, or ``(maps, info)``
    where ``info`` maps a name to one value per sample (diagnostics such as the mask's final
    loss).

    ``views`` names inputs that must be made from the **original** image, before the run's
    whole-image resize (the mask's blurred image is PIL's ``GaussianBlur(10)`` of the original,
    then resized, as the authors' code did). A view is a function
    ``view(image: PIL.Image, size: (H, W), **params) -> uint8 [3,h,w] tensor | None`` whose
    keyword-only parameters are read from the method's parameters of the same name. The harness
    computes the views where it decodes the image (DataLoader workers), preprocesses them like
    ``x`` and passes them to the method as keyword arguments of the view's name; a view that
    returns None (not needed with these parameters) is passed as None. Methods still never read
    files: a direct call without the view gets None and must fall back (and say how in its
    docstring).

    A **variant** (:meth:`variant`) is the method with some parameters fixed: ``base`` names the
    registered method, ``name`` is its own name (``mask_top5``) or an id made of its fixed
    parameters (``mask[iterations=100]``, see :mod:`saliency_bench.variants`).
    """

    name: str
    fn: Callable[..., Any]
    kind: str = HEATMAP
    params: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    views: dict[str, Callable[..., Any]] = field(default_factory=dict)
    base: str | None = None  # the registered method this is a variant of
    root: str = ""  # the name an id is made from ("" = name)
    id_params: dict[str, Any] = field(default_factory=dict)  # the parameters the id shows
    code: str = ""  # a digest of the function's code (a function passed to saliency_bench.run)

    @property
    def key(self) -> str:
        """The registered method plus a hash of the parameters: what a heatmap cache entry is
        keyed by (a variant and the method run with the same parameters share it)."""
        blob = json.dumps(self.params, sort_keys=True, default=str) + self.code
        return f"{self.base or self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"

    def _check(self, params: Mapping[str, Any]) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "none"
            raise TypeError(f"method '{self.name}' has no parameter {', '.join(unknown)} (it takes: {known})")

    def with_params(self, **params: Any) -> "Method":
        """The same row (same name) with other parameter values."""
        self._check(params)
        return dataclasses.replace(self, params={**self.params, **params})

    def variant(self, name: str | None = None, doc: str = "", **params: Any) -> "Method":
        """A variant with ``params`` fixed: named ``name``, or ``root[k=v,...]`` after its id
        parameters (those of this method's id, then ``params``)."""
        from ..variants import variant_id

        self._check(params)
        if name:
            root, idp = name, {}
        else:
            root = self.root or self.name
            idp = {**self.id_params, **params}
            name = variant_id(root, idp)
        return dataclasses.replace(self, name=name, root=root, id_params=idp, base=self.base or self.name,
                                   params={**self.params, **params}, doc=doc or self.doc)

    def explain(self, model: Model, x: torch.Tensor, targets: Any,
                **views: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """Run the method; ``views`` are the preprocessed views (``blurred=...``), if any.
        ``targets`` may be a ``Targets``, a padded ``[B,K]`` tensor or a list of class sets."""
        from ..targets import Targets

        unknown = sorted(set(views) - set(self.views))
        if unknown:
            raise TypeError(f"method '{self.name}' takes no view {', '.join(unknown)} "
                            f"(its views: {', '.join(self.views) or 'none'})")
        if not isinstance(targets, Targets):
            targets = Targets(targets, x.device)
        out = self.fn(model, x, targets, **self.params, **views)
        maps, info = out if isinstance(out, tuple) else (out, {})
        return maps, dict(info)

    def view_key(self, view: str) -> tuple:
        """What view ``view`` depends on: its function and the parameters it reads (one
        computation serves every method whose key is equal)."""
        fn = self.views[view]
        return (fn.__module__, fn.__qualname__,
                tuple(sorted((k, repr(self.params[k])) for k in _keyword_names(fn) if k in self.params)))

    def make_view(self, view: str, image: Any, size: tuple[int, int]) -> torch.Tensor | None:
        """View ``view`` of one original image (PIL) for an input of ``size`` (H, W)."""
        fn = self.views[view]
        return fn(image, size, **{k: self.params[k] for k in _keyword_names(fn) if k in self.params})


def _keyword_names(fn: Callable[..., Any]) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _where(fn: Callable[..., Any]) -> str:
    try:
        src = f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]}"
    except (TypeError, OSError):
        src = getattr(fn, "__module__", "?")
    return f"{getattr(fn, '__qualname__', fn)} ({src})"


def method_from_function(fn: Callable[..., Any], name: str, kind: str,
                         views: Mapping[str, Callable[..., Any]] | None = None) -> Method:
    """A method from ``fn(model, x, targets, ..., param=default)``: every parameter after the
    first three that has a default is a parameter of the method (keyword-only or not); a
    keyword named like one of ``views`` is the view's slot. The signature is checked here, at
    registration: a parameter that cannot be set (no default) is an error naming the plugin."""
    if not callable(fn):
        raise TypeError(f"method '{name}': {fn!r} is not callable")
    views = dict(views or {})
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise TypeError(f"method '{name}' ({_where(fn)}): cannot read its signature: {e}") from e
    ps = list(sig.parameters.values())
    positional = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3 and not any(p.kind is p.VAR_POSITIONAL for p in ps):
        raise TypeError(f"method '{name}' ({_where(fn)}) must take (model, x, targets) first; "
                        f"it takes ({', '.join(p.name for p in ps)})")
    missing = [v for v in views if v not in sig.parameters]
    if missing:
        raise TypeError(f"method '{name}' ({_where(fn)}): its function takes no keyword {', '.join(missing)} "
                        "for its view(s)")
    rest = [p for p in ps[3:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in views]
    unset = [p.name for p in rest if p.default is inspect.Parameter.empty]
    if unset:
        raise TypeError(f"method '{name}' ({_where(fn)}): parameter(s) {', '.join(unset)} have no default, so "
                        "a run cannot set them; give each a default (def m(model, x, targets, *, sigma=1.0))")
    defaults = {p.name: p.default for p in rest}
    return Method(name=name, fn=fn, kind=kind, params=dict(defaults), defaults=defaults,
                  doc=inspect.getdoc(fn) or "", views=views)


def check_output(method: Method, out: Any, batch_size: int) -> dict[int, str]:
    """Validate a method's return; a structural error raises, a bad *sample* is returned.

    Returns ``{sample index: reason}`` for samples whose map or point is not finite, so the
    harness can record those samples as failed and keep the rest of the batch.
    """
    who = f"method '{method.name}'"
    if not isinstance(out, torch.Tensor):
        raise MethodOutputError(f"{who} returned {type(out).__name__}, expected a torch.Tensor")
    if not out.is_floating_point():
        raise MethodOutputError(f"{who} returned dtype {out.dtype}, expected a floating tensor")
    if method.kind == POINT:
        if tuple(out.shape) != (batch_size, 2):
            raise MethodOutputError(f"{who} returned shape {tuple(out.shape)}, expected points [{batch_size}, 2]")
    else:
        if out.ndim != 3 or out.shape[0] != batch_size or out.shape[1] < 1 or out.shape[2] < 1:
            raise MethodOutputError(
                f"{who} returned shape {tuple(out.shape)}, expected heatmaps [{batch_size}, h, w]")
    with one_thread():  # the harness's own reductions (saliency_bench.threads)
        if bool(torch.isfinite(out.sum())):  # one reduction: a NaN or an inf anywhere makes the sum non-finite
            return {}
        finite = torch.isfinite(out.reshape(batch_size, -1)).all(dim=1).cpu().tolist()
    return {i: f"{who} returned non-finite values (NaN or inf)" for i, ok in enumerate(finite) if not ok}


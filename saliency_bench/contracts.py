"""The four contracts every part of saliency-bench speaks: Sample, Model, Method, Benchmark.

A run moves data along these arrows (docs/ARCHITECTURE.md §1)::

    Dataset -> Sample -> Model.preprocess -> Method.explain -> heatmaps [B,h,w] | points [B,2]
            -> Benchmark.score (per sample) -> Benchmark.summarize (per dataset)

Coordinates: images are ``[B,3,H,W]`` tensors, heatmaps ``[B,h,w]`` at the method's own
resolution (Grad-CAM 7x7, gradient 224x224; higher = more salient; the harness never resizes
them: each benchmark does, as its protocol says),
points ``[B,2]`` as ``(x, y)`` in the pixel coordinates of the *network input*.
Boxes are ``[N,4]`` arrays ``(x1, y1, x2, y2)`` in inclusive integer pixel coordinates of the
*original* image (the VOC convention, ``w = x2 - x1 + 1``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

HEATMAP = "heatmap"
POINT = "point"


# --------------------------------------------------------------------------------------------
# Sample
# --------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One scored unit: an image and one target (a class, or a set of classes scored as one).

    ``targets`` maps a label space (``"imagenet"``, ``"coco"``) to the class indices that make
    the target in that space; a model reads the entry of its own ``label_space``. An empty or
    missing entry means "not evaluable by this model" and is reported, never dropped.
    """

    id: str
    image: Any  # PIL.Image (RGB) once loaded; None for a sample that failed to load
    size: tuple[int, int]  # original (height, width)
    targets: Mapping[str, tuple[int, ...]]
    category: str  # the group per-category metrics average over (wnid, COCO category name)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    mask: np.ndarray | None = None  # bool [H, W] ground-truth region (COCO instance masks)
    flags: dict[str, bool] = field(default_factory=dict)  # e.g. {"difficult": True}
    split: str = "eval"  # "eval" or "heldout" (threshold selection)
    error: str | None = None  # why loading failed; the harness records it as a failure
    # (part name, x, y) in original-image pixels (COCO keypoints, Animal Parts eyes and feet); None:
    # the dataset has no keypoint annotation (the part-saliency benchmark skips it)
    keypoints: list[tuple[str, float, float]] | None = None

    def target_in(self, label_space: str) -> tuple[int, ...]:
        return tuple(self.targets.get(label_space, ()))


class Dataset:
    """A dataset adapter: an indexed list of samples with stable ids.

    ``load(i)`` decodes sample ``i`` (image and ground truth). Per-sample problems (a corrupt
    JPEG, an annotation that does not parse, a category no model can score) do not raise:
    the sample comes back with ``error`` set, and the harness records it as failed. Only a
    problem with the whole dataset (missing folder or annotation file) raises, at construction,
    naming the path and the layout expected. Adapters are picklable (DataLoader workers).
    """

    name: str = ""
    label_space: str = "imagenet"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ids(self) -> list[str]:
        raise NotImplementedError

    def load(self, i: int) -> Sample:
        raise NotImplementedError

    def describe(self) -> dict:
        """Counts for the run's report: samples, per category, failed/not evaluable, options."""
        return {"samples": len(self)}


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassInfo:
    index: int
    wnid: str
    name: str


@dataclass
class Model:
    """A classifier with what methods and benchmarks need to know about it.

    ``roles`` names the module that fills each method role (``"gradcam"``, ``"excitation"``,
    ``"contrast"``, ``"classifier"``); ``aliases`` gives short names to other layers
    (``"pool3"``) for the intermediate-layer mask. ``net`` maps normalised input to
    **pre-softmax logits**.
    """

    name: str
    net: nn.Module
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: Sequence[ClassInfo]
    label_space: str = "imagenet"
    roles: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    weights: str = ""  # where the weights came from
    digest: str = ""  # short content hash of the weights, part of every cache key

    def __post_init__(self) -> None:
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        # In-place activations break backward hooks (and modified backward rules).
        for m in self.net.modules():
            if hasattr(m, "inplace"):
                m.inplace = False

    @property
    def device(self) -> torch.device:
        p = next(self.net.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> "Model":
        # channels-last: oneDNN and cuDNN run these convnets 2-3x faster in that layout
        # (EfficientNet-Lite0 forward on 2 CPU cores: 4.6 -> 11.7 images/s).
        self.net.to(device=device, memory_format=torch.channels_last)
        return self

    def layer_name(self, role_or_name: str) -> str:
        """Resolve a role (``gradcam``), an alias (``pool3``) or a module path (``features.16``)."""
        name = self.roles.get(role_or_name) or self.aliases.get(role_or_name) or role_or_name
        modules = dict(self.net.named_modules())
        if name not in modules:
            known = sorted(set(self.roles) | set(self.aliases))
            raise KeyError(
                f"model '{self.name}' has no layer '{role_or_name}'; roles and aliases: "
                f"{', '.join(known)}; or give a module path such as "
                f"'{next(iter(n for n in modules if n), '')}'"
            )
        return name

    def layer(self, role_or_name: str) -> nn.Module:
        return dict(self.net.named_modules())[self.layer_name(role_or_name)]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B,3,H,W]`` (already at ``input_size``) -> normalised float on the model's device.

        The dataset's mean pixel is 0 after this, so "fill with the mean pixel" is "fill with 0".
        """
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def class_index(self, spec: str | int) -> int:
        """A class given as an index, a WordNet id, or (a unique part of) its name."""
        if isinstance(spec, int) or str(spec).isdigit():
            i = int(spec)
            if not 0 <= i < len(self.classes):
                raise ValueError(f"class index {i} is outside 0..{len(self.classes) - 1}")
            return i
        s = str(spec).strip().lower()
        exact = [c.index for c in self.classes if s in (c.wnid.lower(), c.name.lower())]
        if exact:
            return exact[0]
        part = [c.index for c in self.classes if s in c.name.lower()]
        if len(part) == 1:
            return part[0]
        if not part:
            raise ValueError(f"no class of model '{self.name}' matches '{spec}'")
        names = ", ".join(f"{i}:{self.classes[i].name}" for i in part[:8])
        raise ValueError(f"'{spec}' matches several classes ({names}...): give the index")


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A short, stable content hash of a state dict (cache keys depend on the weights)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k]
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().flatten()[:4096].cpu().numpy().tobytes())
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Method
# --------------------------------------------------------------------------------------------
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
        from .variants import variant_id

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
        from .targets import Targets

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
    finite = torch.isfinite(out.reshape(batch_size, -1)).all(dim=1).cpu().tolist()
    return {i: f"{who} returned non-finite values (NaN or inf)" for i, ok in enumerate(finite) if not ok}


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------
class Benchmark:
    """Scores one method's outputs against ground truth.

    ``score`` turns one sample's output (a heatmap **at the resolution its method returned**,
    ``[h,w]``, which the benchmark brings to its own scoring resolution the way its reference
    program does; or a point ``(x, y)`` in input pixels) into a JSON-able record; ``summarize`` turns all records of a
    (method, model, dataset) into metrics. Both are pure: no model, no files.
    ``needs`` names the ground truth a sample must carry (``"boxes"``, ``"mask"``);
    ``accepts`` the method kinds that can be scored.

    **The model in the loop.** A benchmark with ``uses_model = True`` (the faithfulness games)
    gets ``probe=``, a :class:`Probe`, as a keyword of ``score_batch``: the batch's inputs on
    the run's device and batched forward passes of perturbed inputs, timed for the runtime
    table. ``views`` names inputs the benchmark makes from each original image (a blurred
    image, say): :meth:`make_view` makes them in the DataLoader workers, as methods' views
    are, and ``probe.view(name)`` hands them over preprocessed.

    **The method in the loop.** A benchmark with ``reruns_method = True`` (and ``uses_model``:
    randomisation, sensitivity) may also ask the harness to run *the method under test* again:
    :meth:`Probe.explain` on other inputs, or on a copy of the model from :meth:`Probe.model_copy`
    (which it may randomise: the model every other method sees is never touched). A benchmark
    never imports a method; those maps are not the method's own: they are never cached nor scored
    as its maps, and their time counts in the benchmark's cost column.
    """

    name: str = ""
    needs: tuple[str, ...] = ()
    accepts: tuple[str, ...] = (HEATMAP,)
    columns: tuple[str, ...] = ()  # leaderboard columns this benchmark fills, in order
    uses_model: bool = False
    reruns_method: bool = False  # needs Probe.explain (the method under test, run again)
    views: tuple[str, ...] = ()
    #: Column headers (``{"pointing_all": "Pointing all (%)"}``), short headers for narrow
    #: terminals, the columns where lower is better, and those whose ``ci`` is a spread of
    #: calls rather than a confidence interval. The leaderboard reads them from the run.
    titles: Mapping[str, str] = {}
    short: Mapping[str, str] = {}
    lower_is_better: tuple[str, ...] = ()
    no_interval: tuple[str, ...] = ()
    #: A timing benchmark (``runtime``) is fed the run's timings instead of maps:
    #: ``summarize_timings(timings, model_timing)`` replaces ``summarize``.
    timing: bool = False
    #: Forward passes per scored sample (a benchmark that runs the model); a CPU run that names
    #: no benchmarks leaves out those of a hundred or more, and says so.
    cost: float | None = None
    #: False: run only when asked for by name or pattern (not by the default selection).
    default: bool = True
    base: str | None = None  # the registered benchmark this is a variant of
    suffix: str = ""  # a variant's id part, "[resolution=input]": appended to its column keys

    def column_info(self) -> list[dict]:
        """What the leaderboard needs to show each column, keys and titles with the suffix."""
        sfx = f" {self.suffix}" if self.suffix else ""
        return [{"key": c + self.suffix, "title": self.titles.get(c, c) + sfx,
                 "short": self.short.get(c, self.titles.get(c, c)) + sfx,
                 "better": "lower" if c in self.lower_is_better else "higher",
                 "interval": c not in self.no_interval, "benchmark": self.name} for c in self.columns]

    def make_view(self, name: str, image: Any, size: tuple[int, int]) -> torch.Tensor | None:
        """The view ``name`` of a sample: ``uint8 [3,H,W]`` at the input ``size`` (H, W) made from
        the original PIL ``image``, or None (``probe.view`` is then None for the batch)."""
        raise NotImplementedError(f"benchmark '{self.name}' declares views but makes none")

    def __init__(self, **options: Any) -> None:
        self.options = options

    def applies_to(self, sample: Sample) -> bool:
        if "boxes" in self.needs and len(sample.boxes) == 0:
            return False
        if "mask" in self.needs and sample.mask is None and len(sample.boxes) == 0:
            return False
        # a flag named like a need, False: this sample lacks it (the bundled sample's images with
        # several categories, for localization's single_class)
        return not any((sample.flags or {}).get(n) is False for n in self.needs)

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        raise NotImplementedError

    def score_batch(self, samples: Sequence[Sample], outputs: np.ndarray,
                    input_size: tuple[int, int]) -> list[dict]:
        """Score a batch (``outputs[i]`` belongs to ``samples[i]``); override to vectorise."""
        return [self.score(s, o, input_size) for s, o in zip(samples, outputs)]

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        """Metrics of one (method, model, dataset).

        ``samples[i]`` is the metadata of the sample behind ``records[i]``: ``id``,
        ``category``, ``split``, ``flags``. Returns ``{column: metric}`` for the columns in
        ``self.columns``, each metric a dict ``{"value": float | None, "ci": [lo, hi] | None,
        "n": samples used, "unit": "%" | "", "note": str}`` (``note`` e.g. ``"alpha*=0.35"``).
        """
        raise NotImplementedError

    def per_sample(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, Any]:
        """Each column's per-sample quantity, for paired comparisons between methods (docs/PROTOCOLS.md
        §9): ``{column: saliency_bench.benchmarks.stats.PerSample}`` on the same records and
        samples as :meth:`summarize`, which it aggregates to the column's value, the column's own
        choices (alpha*, a best threshold) fixed. A column left out has no paired test."""
        return {}


class Probe:
    """The model in the loop for a benchmark's ``score_batch`` (``Benchmark.uses_model``).

    Row ``i`` belongs to the batch's sample ``i``. ``x`` are the preprocessed inputs
    ``[B,3,H,W]`` on the run's device, ``targets`` their :class:`~saliency_bench.targets.Targets`.
    :meth:`probabilities` and :meth:`scores` run the model without gradients on any number of
    perturbed inputs, ``batch_size`` at a time, and count the passes and the seconds (device
    synchronised), which the harness adds to the benchmark's own runtime.
    """

    def __init__(self, model: Model, x: torch.Tensor, targets: Any,
                 views: Mapping[str, torch.Tensor | None] | None = None, batch_size: int = 16,
                 explainer: Callable[..., Any] | None = None,
                 method_views: Mapping[str, torch.Tensor | None] | None = None) -> None:
        from .targets import Targets

        self.model = model
        self.x = x
        self.targets = targets if isinstance(targets, Targets) else Targets(targets, x.device)
        self._views = dict(views or {})
        self.batch_size = max(1, int(batch_size))
        self.passes = 0
        self.seconds = 0.0
        self.reruns = 0  # maps the method under test made for the benchmark
        self._parent: Probe | None = None  # a probe over some rows adds its cost to its parent's
        # explainer(model, x, targets, views) -> (outputs: list of [h,w] arrays or None, reasons):
        # the harness's isolated call of the method under test (None: a plain model-in-the-loop probe)
        self._explainer = explainer
        self._method_views = dict(method_views or {})

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def view(self, name: str) -> torch.Tensor | None:
        """The benchmark's view ``name`` of every row, preprocessed ``[B,3,H,W]``, or None."""
        return self._views.get(name)

    def rows(self, rows: Sequence[int]) -> "Probe":
        """A probe over some rows (the harness scores sample by sample when a batch fails);
        passes and seconds still add up in the parent."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.x.device)
        sub = Probe(self.model, self.x[idx], self.targets[idx.cpu()].to(self.x.device),
                    {k: None if v is None else v[idx] for k, v in self._views.items()}, self.batch_size,
                    self._explainer, {k: None if v is None else v[idx] for k, v in self._method_views.items()})
        sub._parent = self
        return sub

    def _count(self, passes: int, seconds: float, reruns: int = 0) -> None:
        self.passes += passes
        self.seconds += seconds
        self.reruns += reruns
        if self._parent is not None:
            self._parent._count(passes, seconds, reruns)

    def model_copy(self) -> Model:
        """A deep copy of the model (net, parameters, buffers) to randomise; the run's model stays as
        loaded. The copy keeps its name, roles and layers, so a method finds its layers in it."""
        import copy

        return copy.deepcopy(self.model)

    def explain(self, x: torch.Tensor | None = None, rows: Sequence[int] | torch.Tensor | None = None,
                model: Model | None = None, targets: Any = None) -> tuple[list[np.ndarray | None], list[str | None]]:
        """Run the method under test (with its parameters and, for its own inputs, its views) on
        ``x`` (default: the batch's inputs), for the target sets of ``rows`` (default: every row,
        ``rows[n]`` belongs to ``x[n]``) or the given ``targets``, on ``model`` (default: the run's
        model; or a copy from :meth:`model_copy`). Returns the maps at the method's resolution
        (float32 numpy, or None) and, per map, why there is none (the method raised, returned
        non-finite values). Timed (device synchronised) into the benchmark's cost."""
        import time

        from .targets import Targets

        if self._explainer is None:
            raise RuntimeError("this probe cannot re-run the method: the benchmark must declare "
                               "reruns_method = True")
        own = x is None
        x = self.x if own else x.to(self.x.device)
        rows = torch.arange(x.shape[0]) if rows is None else torch.as_tensor(rows, dtype=torch.long).cpu()
        if targets is None:
            targets = self.targets[rows].to(self.x.device)
        elif not isinstance(targets, Targets):
            targets = Targets(targets, self.x.device)
        views = {k: None if v is None else v[rows.to(v.device)] for k, v in self._method_views.items()}
        dev = self.x.device
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        outputs, reasons = self._explainer(model or self.model, x, targets, views)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        self._count(0, time.perf_counter() - t0, int(x.shape[0]))
        return outputs, reasons

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[N,C]`` logits of ``N`` preprocessed inputs (float32, on the device)."""
        import time

        dev = self.x.device
        out = []
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            for j in range(0, x.shape[0], self.batch_size):
                out.append(self.model.net(x[j:j + self.batch_size].to(dev)).float())
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        self._count(int(x.shape[0]), time.perf_counter() - t0)
        return torch.cat(out) if out else torch.zeros(0, len(self.model.classes), device=dev)

    def probabilities(self, x: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``[N]`` softmax probability of the target set of row ``rows[n]`` for input ``x[n]``."""
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()
        return self.targets[rows].to(self.x.device).probability(self.logits(x))

    def scores(self, x: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``[N]`` pre-softmax target score (log-sum-exp of the set's logits) of row ``rows[n]``."""
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()
        return self.targets[rows].to(self.x.device).score(self.logits(x))

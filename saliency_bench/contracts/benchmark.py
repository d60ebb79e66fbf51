"""The Benchmark contract: a scoring protocol, the columns it declares, the metrics it returns,
the model it may query while scoring, and the kinds of summary row a run stores."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .method import HEATMAP
from .model import Model
from .sample import Sample


class Row:
    """The kinds of summary row the store holds beside the methods' own (in its ``method``
    field): what the leaderboard reads besides the scores."""

    MODEL = "__model__"  # the model's own forward+backward rate (benchmark "runtime")
    SKIPPED = "__skipped__"  # a benchmark the dataset cannot feed, and why
    COLUMNS = "__columns__"  # the columns a benchmark declares (titles, direction)
    PROTOCOL = "__protocol__"  # the protocol each column of a benchmark follows
    SUBSET = "__subset__"  # a benchmark that scored part of the dataset, and which part
    COMPARE = "__compare__"  # the paired comparisons of a benchmark's columns
    KINDS = (MODEL, SKIPPED, COLUMNS, PROTOCOL, SUBSET, COMPARE)
    COVERAGE = "coverage"  # the benchmark field of a method's coverage row (samples scored/failed)


class Column(str):
    """A leaderboard column a benchmark fills: its key (the column *is* its key, so a plain
    string works too), title, short title for narrow terminals, unit, and whether lower is
    better and the ``ci`` is a confidence interval (not a spread of calls)."""

    title: str
    short: str
    unit: str
    better: str
    interval: bool

    def __new__(cls, key: str, title: str = "", short: str = "", unit: str = "", *,
                lower_is_better: bool = False, interval: bool = True) -> "Column":
        self = super().__new__(cls, key)
        self.title = title or key
        self.short = short or self.title
        self.unit = unit
        self.better = "lower" if lower_is_better else "higher"
        self.interval = interval
        return self

    @classmethod
    def of(cls, c: str) -> "Column":
        return c if isinstance(c, Column) else Column(c)

    def metric(self, value: float | None, ci: Sequence[float] | None = None, n: int = 0,
               note: str = "") -> "Metric":
        """A metric of this column, in its unit."""
        return Metric(value, ci, n, self.unit, note)


@dataclass(frozen=True, eq=False)
class Metric(Mapping):
    """One summary value: ``value`` (None: none), its 95% interval ``ci`` (or a spread, or
    None), the ``n`` samples it rests on, its ``unit`` and a ``note`` (``"alpha*=0.35 (...)"``);
    ``extra``: more fields a benchmark reports beside them (stored with them, never columns).
    Read like the dict it is stored as (``metric["value"]``)."""

    value: float | None
    ci: Sequence[float] | None = None
    n: int = 0
    unit: str = ""
    note: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    FIELDS = ("value", "ci", "n", "unit", "note")

    @classmethod
    def empty(cls, note: str, n: int = 0, unit: str = "") -> "Metric":
        """No value, and why."""
        return cls(None, None, n, unit, note)

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in self.FIELDS}, **self.extra}

    def __getitem__(self, key: str) -> Any:
        if key in self.FIELDS:
            return getattr(self, key)
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter((*self.FIELDS, *(k for k in self.extra if k not in self.FIELDS)))

    def __len__(self) -> int:
        return len(list(iter(self)))


class Benchmark:
    """Scores one method's outputs against ground truth.

    ``score_batch`` (the one scoring verb the harness calls) turns a batch of outputs (heatmaps
    **at the resolution their method returned**, ``[h,w]``, which the benchmark brings to its
    own scoring resolution the way its reference program does; or points ``(x, y)`` in input
    pixels) into one JSON-able record per sample; by default it calls ``score`` sample by
    sample. ``summarize`` turns all records of a (method, model, dataset) into metrics
    (:class:`Metric`, one per column). Both are pure: no files; no model unless
    ``uses_model``. ``needs`` names the ground truth a sample must carry (``"boxes"``,
    ``"mask"``); ``accepts`` the method kinds that can be scored.

    **Columns.** ``columns`` declares the leaderboard columns the benchmark fills, in order,
    each a :class:`Column` (title, short title, unit, direction); the leaderboard reads them
    from the run and nothing else. **Options** are read with :meth:`option` (given, else the
    benchmark's ``defaults``).

    **The model in the loop.** A benchmark with ``uses_model = True`` (the faithfulness games)
    gets ``query=``, a :class:`ModelQuery`: the batch's inputs on the run's device and batched
    forward passes of perturbed inputs, timed for the runtime table. ``views`` names inputs
    the benchmark makes from each original image (a blurred image, say): :meth:`make_view`
    makes them in the DataLoader workers, as methods' views are, and ``query.view(name)``
    hands them over preprocessed.
    """

    name: str = ""
    needs: tuple[str, ...] = ()
    accepts: tuple[str, ...] = (HEATMAP,)
    columns: tuple[str, ...] = ()  # the leaderboard columns this benchmark fills, in order (Column)
    uses_model: bool = False
    #: The method in the loop (randomisation): the benchmark may ask the harness to run the method
    #: under test again (:meth:`ModelQuery.explain`, on other inputs or on a copy of the model from
    #: :meth:`ModelQuery.model_copy`). A benchmark never imports a method; those maps are never
    #: cached nor scored as the method's own, and their time counts in the benchmark's cost column.
    reruns_method: bool = False
    views: tuple[str, ...] = ()
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

    def __init__(self, **options: Any) -> None:
        self.options = options

    def option(self, key: str) -> Any:
        """The value of option ``key``: as the run gave it, else the benchmark's default."""
        if key in self.options:
            return self.options[key]
        defaults = getattr(self, "defaults", None) or {}
        if key not in defaults:
            raise KeyError(f"benchmark '{self.name}' has no option '{key}'")
        return defaults[key]

    def declared_column(self, key: str) -> Column:
        """The declared column ``key``."""
        return next(Column.of(c) for c in self.columns if c == key)

    def cost_column(self) -> Column:
        """A benchmark that runs the model: the column of its own seconds per image (before the
        suffix), beside the methods' runtime."""
        return Column(f"{self.base or self.name}_s_per_image", f"{self.name} s/image", f"{self.name} s/img", "s",
                      lower_is_better=True, interval=False)

    def column_info(self) -> list[dict]:
        """What the leaderboard needs to show each column (the declared ones, then the scoring
        cost of a benchmark that runs the model), keys and titles with the variant's suffix
        (the cost column's title names the benchmark, suffix and all)."""
        sfx = f" {self.suffix}" if self.suffix else ""
        titled = [(Column.of(c), sfx) for c in self.columns] + ([(self.cost_column(), "")] if self.uses_model else [])
        return [{"key": c + self.suffix, "title": c.title + t, "short": c.short + t, "better": c.better,
                 "interval": c.interval, "benchmark": self.name} for c, t in titled]

    def make_view(self, name: str, image: Any, size: tuple[int, int]) -> torch.Tensor | None:
        """The view ``name`` of a sample: ``uint8 [3,H,W]`` at the input ``size`` (H, W) made from
        the original PIL ``image``, or None (``query.view`` is then None for the batch)."""
        raise NotImplementedError(f"benchmark '{self.name}' declares views but makes none")

    def applies_to(self, sample: Sample) -> bool:
        """Whether ``sample`` has every ground truth in ``needs``; a need ``"a|b"`` is met by either
        (pointing and relevance: a mask, or boxes)."""
        return all(any(_has(sample, alt) for alt in need.split("|")) for need in self.needs)

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int], **kw: Any) -> dict:
        """One sample's record (``kw``: ``query=`` for a benchmark that uses the model)."""
        raise NotImplementedError

    def score_batch(self, samples: Sequence[Sample], outputs: np.ndarray, input_size: tuple[int, int],
                    *, query: "ModelQuery | None" = None) -> list[dict]:
        """The records of a batch (``outputs[i]`` belongs to ``samples[i]``; ``query`` rows too);
        override to vectorise."""
        if not self.uses_model:
            return [self.score(s, o, input_size) for s, o in zip(samples, outputs)]
        return [self.score(s, o, input_size, query=query.rows([i]))
                for i, (s, o) in enumerate(zip(samples, outputs))]

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> Mapping[str, Metric]:
        """Metrics of one (method, model, dataset): ``{column: Metric}`` for the columns in
        ``self.columns``. ``samples[i]`` is the metadata of the sample behind ``records[i]``:
        ``id``, ``category``, ``split``, ``flags``."""
        raise NotImplementedError

    def per_sample(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, Any]:
        """Each column's per-sample quantity, for paired comparisons between methods (docs/PROTOCOLS.md
        §9): ``{column: saliency_bench.benchmarks.stats.PerSample}`` on the same records and
        samples as :meth:`summarize`, which it aggregates to the column's value, the column's own
        choices (alpha*, a best threshold) fixed. A column left out has no paired test."""
        return {}


class ModelQuery:
    """The model a benchmark queries while scoring (``Benchmark.uses_model``).

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
        from ..targets import Targets

        self.model = model
        self.x = x
        self.targets = targets if isinstance(targets, Targets) else Targets(targets, x.device)
        self._views = dict(views or {})
        self.batch_size = max(1, int(batch_size))
        self.passes = 0
        self.seconds = 0.0
        self.reruns = 0  # maps the method under test made for the benchmark
        self._parent: ModelQuery | None = None  # a query over some rows adds its cost to its parent's
        # explainer(model, x, targets, views) -> (outputs: list of [h,w] arrays or None, reasons):
        # the harness's isolated call of the method under test (None: a plain model-in-the-loop query)
        self._explainer = explainer
        self._method_views = dict(method_views or {})

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def view(self, name: str) -> torch.Tensor | None:
        """The benchmark's view ``name`` of every row, preprocessed ``[B,3,H,W]``, or None."""
        return self._views.get(name)

    def rows(self, rows: Sequence[int]) -> "ModelQuery":
        """A query over some rows (the harness scores sample by sample when a batch fails);
        passes and seconds still add up in the parent."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.x.device)
        sub = ModelQuery(self.model, self.x[idx], self.targets[idx.cpu()].to(self.x.device),
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
        """Run the method under test (its parameters and, for its own inputs, its views) on ``x``
        (default: the batch's inputs), for the target sets of ``rows`` (default: every row) or the
        given ``targets``, on ``model`` (default: the run's model, or a copy from
        :meth:`model_copy`). Returns the maps at the method's resolution (float32 numpy, or None)
        and, per map, why there is none. Timed (device synchronised) into the benchmark's cost."""
        from ..targets import Targets
        from ..timing import timed

        if self._explainer is None:
            raise RuntimeError("this query cannot re-run the method: the benchmark must declare "
                               "reruns_method = True")
        x = self.x if x is None else x.to(self.x.device)
        rows = torch.arange(x.shape[0]) if rows is None else torch.as_tensor(rows, dtype=torch.long).cpu()
        if targets is None:
            targets = self.targets[rows].to(self.x.device)
        elif not isinstance(targets, Targets):
            targets = Targets(targets, self.x.device)
        views = {k: None if v is None else v[rows.to(v.device)] for k, v in self._method_views.items()}
        (outputs, reasons), seconds, _ = timed(lambda: self._explainer(model or self.model, x, targets, views),
                                               self.x.device)
        self._count(0, seconds, int(x.shape[0]))
        return outputs, reasons

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[N,C]`` logits of ``N`` preprocessed inputs (float32, on the device)."""
        from ..timing import timed

        dev = self.x.device

        def forward() -> list[torch.Tensor]:
            with torch.no_grad():
                return [self.model.net(x[j:j + self.batch_size].to(dev)).float()
                        for j in range(0, x.shape[0], self.batch_size)]

        out, seconds, _ = timed(forward, dev)
        self._count(int(x.shape[0]), seconds)
        return torch.cat(out) if out else torch.zeros(0, len(self.model.classes), device=dev)

    def probabilities(self, x: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``[N]`` softmax probability of the target set of row ``rows[n]`` for input ``x[n]``."""
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()
        return self.targets[rows].to(self.x.device).probability(self.logits(x))

    def scores(self, x: torch.Tensor, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``[N]`` pre-softmax target score (log-sum-exp of the set's logits) of row ``rows[n]``."""
        rows = torch.as_tensor(rows, dtype=torch.long).cpu()
        return self.targets[rows].to(self.x.device).score(self.logits(x))


def _has(sample: Sample, need: str) -> bool:
    """Whether ``sample`` has the ground truth ``need``: boxes, a mask, or else a flag of that name
    that is not False (the bundled sample's images with several categories lack ``single_class``)."""
    if need == "boxes" and len(sample.boxes) == 0:
        return False
    if need == "mask" and sample.mask is None:
        return False
    return (sample.flags or {}).get(need) is not False

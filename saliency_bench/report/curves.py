"""The per-step curves of the HTML page, read from the store's per-sample records: ROAD's change of
the target score per percentile (MoRF and LeRF, ``morf_curve``/``lerf_curve``) and randomisation's
similarity to the original map per step of the cascade from the logits down (``spearman``/``ssim``,
step names in ``steps``). Each curve is the mean per step over the samples of one method whose
record has it (a step without a value in a record is left out of that step's mean); nothing is
recomputed. A run whose records have no curves (written before they did, or without these
benchmarks) has none, and the page shows none. Drawn as inline SVG like :mod:`.plots`."""
from __future__ import annotations

import html
import math
from collections import Counter
from pathlib import Path

from .axes import nice_ticks

# benchmark -> what its records hold: the series (label, record key), the x labels, the axes
CURVES = {
    "road": {"title": "ROAD: change of the target score per percentile p",
             "series": (("MoRF", "morf_curve"), ("LeRF", "lerf_curve")),
             "x_option": "percentiles", "x_title": "percentile p (removed: MoRF above it, LeRF below)",
             "y_title": "score change"},
    "randomisation": {"title": "Randomisation: similarity to the original map per step, from the logits down",
                      "series": (("Spearman", "spearman"), ("SSIM", "ssim")),
                      "x_record": "steps", "x_title": "layers randomised (cumulative)", "y_title": "similarity"},
}


def _mean_curve(records: list[dict], key: str, length: int) -> tuple[list[float | None], int]:
    sums, counts, n = [0.0] * length, [0] * length, 0
    for r in records:
        c = r.get(key)
        if not isinstance(c, list) or len(c) != length:
            continue
        n += 1
        for i, v in enumerate(c):
            if isinstance(v, (int, float)) and math.isfinite(v):
                sums[i] += float(v)
                counts[i] += 1
    return [s / k if k else None for s, k in zip(sums, counts)], n


def aggregate(bench: str, records: list[dict], options: dict | None = None) -> dict | None:
    """One method's curve of benchmark ``bench`` from its records: ``{"x": labels, "series":
    {label: [mean or None]}, "n": samples}``; None when no record has one."""
    spec = CURVES.get(bench)
    if spec is None:
        return None
    lengths = Counter(len(r[k]) for r in records for _, k in spec["series"] if isinstance(r.get(k), list) and r[k])
    if not lengths:
        return None
    length = lengths.most_common(1)[0][0]
    series, n = {}, 0
    for label, key in spec["series"]:
        mean, used = _mean_curve(records, key, length)
        if used and any(v is not None for v in mean):
            series[label] = mean
            n = max(n, used)
    if not series:
        return None
    x = None
    if "x_record" in spec:
        x = next((r[spec["x_record"]] for r in records
                  if isinstance(r.get(spec["x_record"]), list) and len(r[spec["x_record"]]) == length), None)
    elif "x_option" in spec:
        x = (options or {}).get(spec["x_option"])
        if x is None:  # the settings keep only the options a run named: the benchmark's default
            x = _default_option(bench, spec["x_option"])
        x = [f"{float(v):g}" for v in x] if isinstance(x, (list, tuple)) and len(x) == length else None
    return {"x": [str(v) for v in x] if x else [str(i + 1) for i in range(length)], "series": series, "n": n}


def _default_option(bench: str, key: str):
    """A benchmark's default for option ``key`` (its class's ``defaults``), or None."""
    from ..registry import benchmarks

    try:
        return dict(getattr(benchmarks.get(bench), "defaults", None) or {}).get(key)
    except Exception:  # a benchmark no longer installed: index labels
        return None


def read_curves(store_path: Path, run_id: str, settings: dict,
                tables: dict[tuple[str, str], list[str]]) -> dict[tuple[str, str], dict[str, dict[str, dict]]]:
    """Per (model, dataset): benchmark -> method -> curve, for the benchmarks of :data:`CURVES` the
    run has, from the records in the store at ``store_path``."""
    from ..store import Store

    benches = [b for b in CURVES if b in (settings.get("benchmarks_resolved") or [])]
    if not benches or not Path(store_path).is_file():
        return {}
    options = settings.get("benchmark_options_resolved") or {}
    store = Store(store_path, create=False)
    try:
        out: dict[tuple[str, str], dict[str, dict[str, dict]]] = {}
        for (model, dataset), methods in tables.items():
            for b in benches:
                for m in methods:
                    curve = aggregate(b, list(store.records(run_id, model, dataset, m, b).values()), options.get(b))
                    if curve is not None:
                        out.setdefault((model, dataset), {}).setdefault(b, {})[m] = curve
        return out
    finally:
        store.close()


def curve_plot_svg(curve: dict, bench: str, method: str, width: int = 300, height: int = 190) -> str:
    """An inline SVG line plot of one method's curve: one polyline per series, a point per step
    (its value in the point's title), the x labels under the axis."""
    e = html.escape
    spec = CURVES[bench]
    xs, series = curve["x"], curve["series"]
    vals = [v for s in series.values() for v in s if v is not None]
    if not vals or not xs:
        return ""
    long_labels = max(len(x) for x in xs) > 4
    left, right, top = 44, 10, 22
    bottom = 58 if long_labels else 34
    pw, ph = width - left - right, height - top - bottom
    y0, y1 = min(vals), max(vals)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.08 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def X(i: int) -> float:
        return left + (i / (len(xs) - 1) if len(xs) > 1 else 0.5) * pw

    def Y(v: float) -> float:
        return top + (1 - (v - y0) / (y1 - y0)) * ph

    out = [f"<svg class='curve' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' role='img' aria-label='{e(method)}: {e(spec['title'])}' "
           f"data-benchmark='{e(bench)}' data-method='{e(method)}'>"]
    for t in nice_ticks(y0, y1, 4):
        y = Y(t)
        out.append(f"<line class='grid' x1='{left}' x2='{left + pw}' y1='{y:.1f}' y2='{y:.1f}'/>"
                   f"<text x='{left - 4}' y='{y + 3:.1f}' text-anchor='end'>{t:g}</text>")
    step = max(1, math.ceil(len(xs) / 12))
    for i, lab in enumerate(xs):
        if i % step:
            continue
        x, y = X(i), top + ph + 12
        rot = f" transform='rotate(-40 {x:.1f} {y:.1f})'" if long_labels else ""
        out.append(f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{'end' if long_labels else 'middle'}'{rot}>"
                   f"{e(lab)}</text>")
    out.append(f"<line class='axis' x1='{left}' x2='{left + pw}' y1='{top + ph}' y2='{top + ph}'/>"
               f"<line class='axis' x1='{left}' x2='{left}' y1='{top}' y2='{top + ph}'/>"
               f"<text x='{left + pw / 2:.1f}' y='{height - 4}' text-anchor='middle'>{e(spec['x_title'])}</text>"
               f"<text transform='translate(10,{top + ph / 2:.1f}) rotate(-90)' text-anchor='middle'>"
               f"{e(spec['y_title'])}</text>")
    for k, (label, ys) in enumerate(series.items()):
        pts = [(X(i), Y(v), xs[i], v) for i, v in enumerate(ys) if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in pts)
        out.append(f"<g class='series s{k}' data-series='{e(label)}'><polyline points='{path}'/>")
        out += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5'><title>{e(label)} at {e(lab)}: {v:.4g}</title></circle>"
                for x, y, lab, v in pts]
        out.append(f"<text class='legend' x='{left + 6 + 70 * k}' y='{top - 8}'>— {e(label)}</text></g>")
    out.append("</svg>")
    return "".join(out)


def curves_html(t: dict) -> list[str]:
    """The table's curves section: per benchmark, one small plot per method."""
    e = html.escape
    parts: list[str] = []
    for bench, per_method in (t.get("curves") or {}).items():
        figs = [(m, c, curve_plot_svg(c, bench, m)) for m, c in per_method.items()]
        figs = [f for f in figs if f[2]]
        if not figs:
            continue
        parts.append(f"<h3>{e(CURVES[bench]['title'])}</h3><p>Mean over each method's samples (from their "
                     f"records).</p><div class='plots curves' data-benchmark='{e(bench)}'>")
        parts += [f"<figure data-method='{e(m)}'>{svg}<figcaption>{e(m)} (n={c['n']})</figcaption></figure>"
                  for m, c, svg in figs]
        parts.append("</div>")
    return parts

"""Runtime (docs/PROTOCOLS.md §4): images/s and ms/image per (method, model, device, batch size).

Every method call of a run is timed, the device synchronised before the clock is read, and
its peak device memory recorded (``timings`` in the store). The first call of each
(method, model, dataset) is the warm-up and is left out when there are later calls. Beside
it, the model's own forward+backward images/s is measured at the same batch size in the same
run, so a method's cost reads as "passes per image".
"""
from __future__ import annotations

import statistics
from typing import Sequence

from ..contracts import HEATMAP, POINT, Benchmark
from ..registry import benchmark


@benchmark("runtime")
class Runtime(Benchmark):
    """Images/s, ms/image, spread, peak memory and passes per image, from the run's own calls."""

    name = "runtime"
    accepts = (HEATMAP, POINT)
    columns = ("images_per_s", "ms_per_image", "passes_per_image", "peak_mem_mb")
    titles = {"images_per_s": "Images/s", "ms_per_image": "ms/image", "passes_per_image": "Passes/image",
              "peak_mem_mb": "Peak memory (MiB)"}
    short = {"images_per_s": "img/s", "ms_per_image": "ms/img", "passes_per_image": "passes",
             "peak_mem_mb": "MiB"}
    lower_is_better = ("ms_per_image", "passes_per_image", "peak_mem_mb")
    no_interval = ("images_per_s", "ms_per_image", "passes_per_image", "peak_mem_mb")
    timing = True  # fed with the store's timings, not with per-sample outputs

    def summarize_timings(self, timings: Sequence[dict], model_fb: dict | None) -> dict[str, dict]:
        if not timings:
            return {c: {"value": None, "ci": None, "n": 0, "unit": "", "note": "no timed calls"}
                    for c in self.columns}
        by_rank: dict[int, list[dict]] = {}
        for t in sorted(timings, key=lambda t: t["batch_first"]):
            by_rank.setdefault(int(t.get("rank") or 0), []).append(t)
        # Each rank's first call is its warm-up (kept only when it is the rank's only call).
        measured_by_rank = {r: ts[1:] if len(ts) > 1 else ts for r, ts in by_rank.items()}
        measured = [t for ts in measured_by_rank.values() for t in ts]
        per_image = sorted(t["seconds"] / max(1, t["batch_size"]) for t in measured)
        med = statistics.median(per_image)
        lo, hi = per_image[0], per_image[-1]
        n = sum(t["batch_size"] for t in measured)
        device = timings[0]["device"]
        bs = max(t["batch_size"] for t in timings)
        single = all(len(ts) == 1 for ts in by_rank.values())
        note = f"{device}, batch {bs}, {len(measured)} timed calls" + (
            " (no warm-up call: a single batch)" if single else "")
        rate = 1.0 / med
        if len(by_rank) > 1:  # aggregate = the ranks' rates added up
            per_rank = {r: 1.0 / statistics.median(t["seconds"] / max(1, t["batch_size"]) for t in ts)
                        for r, ts in sorted(measured_by_rank.items())}
            rate = sum(per_rank.values())
            note += "; aggregate of ranks " + ", ".join(f"{r}: {v:.3g}" for r, v in per_rank.items())
        out = {
            "images_per_s": {"value": rate, "ci": None if len(by_rank) > 1 else [1.0 / hi, 1.0 / lo], "n": n,
                             "unit": "img/s", "note": note},
            "ms_per_image": {"value": 1000 * med, "ci": [1000 * lo, 1000 * hi], "n": n, "unit": "ms",
                             "note": "median over calls; interval = fastest..slowest call"},
            "peak_mem_mb": {"value": max(t["peak_bytes"] for t in timings) / 2**20 if device.startswith("cuda")
                            else None, "ci": None, "n": n, "unit": "MiB",
                            "note": "peak device memory" if device.startswith("cuda") else "CPU: not measured"},
        }
        if model_fb:
            fb = model_fb["images_per_s"]
            out["passes_per_image"] = {
                "value": fb * med, "ci": None, "n": n, "unit": "",
                "note": f"model forward+backward {fb:.1f} img/s at batch {model_fb['batch_size']}"}
        else:
            out["passes_per_image"] = {"value": None, "ci": None, "n": n, "unit": "", "note": ""}
        return out

"""The gallery: overlays of a few samples per method, drawn from the heatmap cache into
``runs/<id>/gallery/<model>/<dataset>/<sample>__<method>.jpg``, and read back for the HTML page."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..cache import HeatmapCache, safe
from ..contracts import POINT, Method
from ..imageio import display_map, overlay
from ..store import Store


def draw_gallery(store: Store, run_id: str, run_dir: Path, runs_dir: Path, methods: Sequence[Method],
                 count_per: int, cache_dtype: str, model, ds, display: str, ds_key: str) -> None:
    """Overlays of the first few samples that every method explained, for the HTML page."""
    if count_per <= 0:
        return
    count: dict[str, int] = {}
    for m in methods:
        for o in store.outcomes(run_id, model.name, display, m.name):
            count[o["id"]] = count.get(o["id"], 0) + int(o["ok"])
    meta = store.samples(run_id, model.name, display)
    # The first samples (in dataset order) that the most methods explained.
    ranked = sorted((sid for sid in meta if count.get(sid)), key=lambda sid: (-count[sid], meta[sid]["idx"]))
    chosen = ranked[: count_per]
    folder = run_dir / "gallery" / safe(model.name) / safe(display)
    folder.mkdir(parents=True, exist_ok=True)
    model_key = f"{model.name}-{model.digest}"
    caches = {m.name: HeatmapCache(runs_dir / "cache", model_key, ds_key, m.key, cache_dtype)
              for m in methods}
    for sid in chosen:
        sample = ds.load(meta[sid]["idx"])
        if sample.error is not None:
            continue
        w, h = sample.image.size
        ih, iw = model.input_size
        for m in methods:
            cached = caches[m.name].get_many([sid]).get(sid)
            if cached is None:
                continue
            if m.kind == POINT:
                x, y = cached
                pic = overlay(sample.image, point=(x * w / iw, y * h / ih))
            else:
                pic = overlay(sample.image, display_map(cached, model.input_size))
            pic.thumbnail((2 * 110 * w // max(h, 1), 110))
            pic.save(folder / f"{safe(sid)}__{safe(m.name)}.jpg", quality=85)


def load_gallery(run_dir: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    """``{"<model> on <dataset>": {sample: {method: jpeg bytes}}}`` from ``run_dir/gallery``."""
    out: dict[str, dict[str, dict[str, bytes]]] = {}
    root = run_dir / "gallery"
    for f in sorted(root.glob("*/*/*.jpg")) if root.is_dir() else []:
        sample, _, method = f.stem.partition("__")
        key = f"{f.parent.parent.name} on {f.parent.name}"
        out.setdefault(key, {}).setdefault(sample, {})[method] = f.read_bytes()
    return out

"""What every speed benchmark shares: the built-in plugins from the source tree, the synchronised
timer with warm-up and a time allowance, the model's own ceilings, a wall-time budget, and a
results file that is rewritten after every measurement (an interrupted run keeps what it had).

The ceilings follow docs/PERFORMANCE.md §1: forward+backward is the input gradient of the target's
pre-softmax score (what every backprop method needs at least), forward-only is the logits under
``no_grad`` (what every occlusion copy needs at least). Timings go through the runtime
:func:`saliency_bench.timing.timed` (the device is synchronised before
each clock read); a measurement reports the median and the best of its repeats.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import importlib.util
import json
import os
import platform
import re
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from saliency_bench.timing import synchronize, timed
from saliency_bench.registry import get_method
from saliency_bench.targets import target_score

ROOT = Path(__file__).resolve().parents[1]

#: Parameters a method may expose that change its speed and not its definition (beyond a stated
#: tolerance): each one that a method has, as a boolean that is off by default, is timed on too.
SPEED_KNOBS = ("amp", "cuda_graph")


# --------------------------------------------------------------------------------------------
# Built-in plugins without an installed distribution
# --------------------------------------------------------------------------------------------
#: A ``sitecustomize.py`` that hides an installed distribution of ours from a process: no editable
#: finder (which would serve ``saliency_bench.methods`` from the install), no entry points in our
#: groups. What is left is the source tree on ``PYTHONPATH``, as ``PYTHONPATH=. bash perf/gpu.sh``
#: has it on a machine where nothing is installed.
HIDE_INSTALL = '''
import importlib.metadata as md
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__name__", type(f).__name__).lower()]
_entry_points = md.entry_points
def entry_points(**kw):
    if str(kw.get("group", "")).startswith("saliency_bench."):
        return md.EntryPoints(())
    return _entry_points(**kw)
md.entry_points = entry_points
'''


def load_builtins() -> str:
    """Make sure the built-in models and methods are registered; say where they came from.

    The registries are filled from entry points, which exist only once the package is installed.
    Run from a source checkout (``PYTHONPATH=.``), ``methods/`` is not importable as
    ``saliency_bench.methods`` (the install maps it there), so the package is made from the
    folder under that very name (its modules import each other relatively) and every module is
    registered the way an entry point would register it.
    """
    from saliency_bench import registry

    methods_ok = {"gradient", "mask", "occlusion"} <= set(registry.methods.names())
    models_ok = {"googlenet", "efficientnet_lite0"} <= set(registry.models.names())
    if methods_ok and models_ok:
        return "entry points"
    if not models_ok:
        import saliency_bench.models

        registry.models.add_from(saliency_bench.models, "source tree saliency_bench/models.py")
    if not methods_ok:
        pkg = "saliency_bench.methods"
        folder = ROOT / "methods"
        try:
            importlib.import_module(pkg)
        except ModuleNotFoundError:
            spec = importlib.util.spec_from_file_location(
                pkg, folder / "__init__.py", submodule_search_locations=[str(folder)])
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[pkg] = module
            spec.loader.exec_module(module)
            import saliency_bench

            saliency_bench.methods = module
        for path in sorted(folder.glob("*.py")):
            if not path.stem.startswith("_"):
                mod = importlib.import_module(f"{pkg}.{path.stem}")
                registry.methods.add_from(mod, f"source tree methods/{path.name}")
    return "source tree"


def random_inputs(model, batch: int, size: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` distinct normalised inputs (channels-last, as ``Model.preprocess`` makes them) on
    the model's device and one random ImageNet class each (``[B,1]``). Speed does not depend on
    the pixels; distinct images keep the occlusion family from sharing copies between them."""
    h, w = (size, size) if size else model.input_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, h, w, generator=g).to(model.device).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 1000, (batch, 1), generator=g).to(model.device)


# --------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------
class Budget:
    """A wall-time budget counted from the start of the run (``None``: unlimited).

    ``allot(weight)`` hands a step its share of what is left: ``weight`` over the weights of the
    steps still to come, so time a step does not use flows on to the later ones.
    """

    def __init__(self, seconds: float | None, start: float | None = None) -> None:
        self.seconds = seconds
        self.start = time.perf_counter() if start is None else start
        self.pending = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.elapsed()

    def plan(self, weight: float) -> None:
        self.pending += weight

    def allot(self, weight: float) -> float:
        share = weight / self.pending if self.pending > 0 else 1.0
        self.pending = max(0.0, self.pending - weight)
        return max(0.0, self.remaining() * min(1.0, share))


def measure(fn: Callable[[], object], device: torch.device, *, warmup: int, repeats: int,
            max_s: float = float("inf"), images: int = 1) -> dict:
    """Time ``fn``: ``warmup`` untimed calls, then up to ``repeats`` timed ones, stopping early
    (after at least one) once ``max_s`` seconds have gone. ``images`` per call give the rates."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    synchronize(device)
    times, peak = [], 0
    for _ in range(max(1, repeats)):
        _, s, p = timed(fn, device)
        times.append(s)
        peak = max(peak, p)
        if time.perf_counter() - t0 > max_s:
            break
    med = statistics.median(times)
    out = {"images": images, "seconds": times, "median_s": med, "best_s": min(times),
           "images_per_s": images / med, "best_images_per_s": images / min(times),
           "warmup": warmup, "repeats": len(times)}
    if device.type == "cuda":
        out["peak_memory_mib"] = peak / 2 ** 20
    return out


# --------------------------------------------------------------------------------------------
# The model's ceilings
# --------------------------------------------------------------------------------------------
def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def forward_backward(model, x: torch.Tensor, targets: torch.Tensor, bf16: bool = False) -> None:
    """The model's own forward + backward to the input: the ceiling of every backprop method."""
    xi = x.detach().requires_grad_(True)
    with torch.enable_grad():
        with autocast(x.device, bf16):
            logits = model.net(xi)
        torch.autograd.grad(target_score(logits.float(), targets).sum(), xi)


def forward_only(model, x: torch.Tensor, bf16: bool = False) -> None:
    """The model's logits without autograd: the ceiling of every perturbed copy."""
    with torch.no_grad(), autocast(x.device, bf16):
        model.net(x)


@contextlib.contextmanager
def memory_format(model, channels_last: bool):
    """The network in channels-last (our default, :meth:`Model.to`) or contiguous layout."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.net.to(memory_format=fmt)
    try:
        yield fmt
    finally:
        model.net.to(memory_format=torch.channels_last)


def ceilings(model, x: torch.Tensor, targets: torch.Tensor, x_forward: torch.Tensor, *, warmup: int,
             repeats: int, max_s: float = float("inf")) -> dict:
    """Forward+backward at ``x``'s batch and forward-only at ``x_forward``'s batch, in fp32 and
    bf16 autocast, channels-last and contiguous: ``{"forward_backward": {variant: timing}, ...}``
    (a variant that fails is recorded as its error)."""
    device = x.device
    out: dict[str, dict] = {"forward_backward": {}, "forward": {}}
    each = max_s / 8
    for channels_last in (True, False):
        with memory_format(model, channels_last) as fmt:
            xb, xf = x.contiguous(memory_format=fmt), x_forward.contiguous(memory_format=fmt)
            for bf16 in (False, True):
                key = f"{'bf16' if bf16 else 'fp32'}_{'channels_last' if channels_last else 'contiguous'}"
                out["forward_backward"][key] = guarded(lambda: measure(
                    lambda: forward_backward(model, xb, targets, bf16), device, warmup=warmup,
                    repeats=repeats, max_s=each, images=len(xb)))
                out["forward"][key] = guarded(lambda: measure(
                    lambda: forward_only(model, xf, bf16), device, warmup=warmup, repeats=repeats,
                    max_s=each, images=len(xf)))
    return out


# --------------------------------------------------------------------------------------------
# Methods and their speed variants
# --------------------------------------------------------------------------------------------
def speed_variants(method) -> dict[str, dict]:
    """``{"default": {}, "amp": {"amp": True}, ..., "amp+cuda_graph": {...}}``: the method as
    registered, each speed knob it has on alone, and all of them together."""
    knobs = [k for k in SPEED_KNOBS if method.defaults.get(k, None) is False]
    out: dict[str, dict] = {"default": {}}
    for k in knobs:
        out[k] = {k: True}
    if len(knobs) > 1:
        out["+".join(knobs)] = {k: True for k in knobs}
    return out


def guarded_variants(name: str) -> dict[str, dict | str]:
    """The method's speed variants, or ``{"default": reason}`` when it cannot be loaded."""
    try:
        return speed_variants(get_method(name))
    except Exception as e:  # recorded where the method's result would be
        return {"default": f"{type(e).__name__}: {e}"}


def timed_call(fn: Callable[[], object], model, images: int, *, warmup: int, repeats: int,
               max_s: float) -> dict:
    """A call's timing, plus the images it sends through the network per image, counted by a
    hook on the network over all the calls (one Python call per forward pass: noise)."""
    calls = [0]

    def counted() -> object:
        calls[0] += 1
        return fn()

    with images_through(model.net) as seen:
        out = measure(counted, model.device, warmup=warmup, repeats=repeats, max_s=max_s, images=images)
    out["network_images_per_image"] = seen[0] / (calls[0] * images)
    return out


@contextlib.contextmanager
def images_through(net: torch.nn.Module) -> Iterator[list[int]]:
    """``[n]``: the images sent through ``net`` while open (its first argument's batch size,
    counted by a forward pre-hook, removed on exit)."""
    seen = [0]

    def hook(_module, args):
        if args and isinstance(args[0], torch.Tensor):
            seen[0] += int(args[0].shape[0])

    handle = net.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def methods_beside_peers(model, x: torch.Tensor, targets: torch.Tensor, out: dict, save: Callable[[], None], *,
                         methods, peers: dict, ceiling: dict, key: str, per_copy: bool, warmup: int,
                         repeats: int, max_s: float = float("inf"),
                         log: Callable[[str], None] = print) -> dict:
    """Time each method (every speed variant) and each peer on the same ``x``; fill ``out``.

    ``peers`` maps a name to ``(module, make)``: ``make(module, model, x, targets)`` is a context
    manager giving the peer's call; a peer whose module does not import is "not installed".
    ``ceiling`` is ``{"fp32": images/s, "bf16": images/s}``; ``key`` names the fraction of it
    each record gets (``amp`` variants also against bf16), counting the images each image sends
    through the network when ``per_copy`` (occlusion's masked copies). ``save`` runs after each.
    """
    b = len(x)
    out.update(batch=b, ceiling={k: v for k, v in ceiling.items() if v}, methods={}, peers={})
    plans = [(name, v, p) for name in methods for v, p in guarded_variants(name).items()]
    each = max_s / max(1, len(plans) + len(peers))

    def ratio(r: dict, variant: str) -> dict:
        if "images_per_s" in r and ceiling.get("fp32"):
            rate = r["images_per_s"] * (r["network_images_per_image"] if per_copy else 1)
            r[key] = rate / ceiling["fp32"]
            if "amp" in variant and ceiling.get("bf16"):
                r[key.replace("fraction_of_", "fraction_of_bf16_")] = rate / ceiling["bf16"]
        return r

    for name, variant, params in plans:
        def one() -> dict:
            if isinstance(params, str):
                raise RuntimeError(params)
            m = get_method(name, **params)
            r = timed_call(lambda: m.explain(model, x, targets), model, b, warmup=warmup, repeats=repeats,
                           max_s=each)
            return {"params": m.params, **r}

        r = ratio(guarded(one), variant)
        out["methods"].setdefault(name, {})[variant] = r
        log(line(f"{model.name} {name}[{variant}]", r, key))
        save()

    for peer, (module, make) in peers.items():
        lib, info = peer_import(module)

        def run_peer() -> dict:
            with make(lib, model, x, targets) as fn:
                return {**info, **timed_call(fn, model, b, warmup=warmup, repeats=repeats, max_s=each)}

        r = ratio(guarded(run_peer), "") if lib is not None else info
        out["peers"][peer] = r
        log(line(f"{model.name} peer {peer}", r, key))
        save()
    return out


def guarded(fn: Callable[[], dict]) -> dict:
    """Run one measurement; an exception becomes its record, so the others still run."""
    try:
        return fn()
    except Exception as e:  # one failing measurement must not lose the rest
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        tb = traceback.format_exc().strip().splitlines()
        return {"error": f"{type(e).__name__}: {e}", "traceback": tb[-6:]}


def peer_import(module: str) -> tuple[Any | None, dict]:
    """Import a peer's module: ``(module, {"version": ...})``, or ``(None, {"status": "not
    installed"})`` when it (or one of its own dependencies) is missing, or ``(None, {"status":
    "import failed"})`` when importing it raises anything else."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return None, {"status": "not installed", "error": f"{type(e).__name__}: {e}"}
    except Exception as e:  # a broken install must not stop the run
        return None, {"status": "import failed", "error": f"{type(e).__name__}: {e}"}
    top = sys.modules[module.split(".")[0]]
    return mod, {"version": getattr(top, "__version__", "unknown")}


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict:
    """Device name, library versions and the numerics switches that change speed."""
    env = {"date": dt.date.today().isoformat(), "device": str(device), "torch": torch.__version__,
           "python": platform.python_version(), "platform": platform.platform(),
           "threads": torch.get_num_threads(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
           "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, device_memory_gib=props.total_memory / 2 ** 30,
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        env["device_name"] = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        env["load_average_start"] = os.getloadavg()
    return env


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


class ResultsFile:
    """A JSON document rewritten (atomically) on every :meth:`save`."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = Path(path)
        self.data = data
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)


def line(label: str, r: dict, key: str = "") -> str:
    """One human-readable line of a record: its rate and the fraction named ``key``."""
    if "images_per_s" in r:
        frac = f", {r[key]:.3g} {key.replace('fraction_of_', 'of ').replace('_', ' ')}" if key in r else ""
        return f"  {label}: {r['images_per_s']:.4g} images/s{frac}"
    return f"  {label}: {r.get('status') or r.get('skipped') or r.get('error')}"

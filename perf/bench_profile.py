"""Where a method's time goes: the operators, kernels, copies and host syncs of one call, under
``torch.profiler``, beside the model's own passes (issue 22, item 4: "find out where the time
goes ... by counting kernels, copies and syncs, not by guessing").

For each method below its target (guided backprop, excitation backprop, contrastive EB, occlusion,
blur occlusion), for gradient (at its ceiling, the control), for Captum ``Occlusion`` and for the
two references (forward+backward at the batch, forward-only at the occlusion pass size), one call
is profiled after one warm-up call. Each record says, per call and per image sent through the
network (``network_images``, counted by a hook, as the speed sections count them):

* ``aten_ops``: operators dispatched, each a host-side cost (Python, the dispatcher, a kernel
  launch on a GPU); ``top_self``: the operators with the most self time (on the CPU: where the
  time goes);
* ``copies``: ``aten::copy_`` calls of tensors (layout changes, dtype casts, ``.to``; not the
  0-dim tensors that Python numbers become) and their self time;
* ``host_reads``: operators that read a device value on the host or size their output from the
  data (``item``, ``nonzero``, ``unique``, ``masked_select``): a sync each on a GPU. On a CPU,
  ``.tolist()`` and ``.cpu()`` of a CPU tensor dispatch nothing and are not seen;
* on CUDA also: ``kernels`` (count, device time, the top kernels), ``memcpy`` by kind, the sync
  calls of the CUDA runtime, ``device_busy_s`` (the union of the kernels' intervals) and
  ``device_idle_fraction`` over the call's wall time up to its last kernel, and the Python lines of
  every synchronising operation (``torch.cuda.set_sync_debug_mode("warn")``).

The profiler adds host cost per operator, so rates are the speed sections' business; this says
where a call's time and launches go, and how a method's count compares with its reference.

    python perf/bench_profile.py --device cpu --model googlenet --size 112 --batch 4 --threads 1
    bash perf/gpu.sh --sections profile            # on CUDA, with every other section by default

Writes ``perf/results/profile-<device>-<date>.json`` (``--out`` to change it).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import time
import types
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench_common import (ResultsFile, environment, forward_backward, forward_only, guarded, images_through,
                          load_builtins, peer_import, random_inputs)
from bench_perturbation import captum_occlusion_peer
from saliency_bench.registry import get_method, get_model
from saliency_bench.timing import synchronize

#: Methods profiled: the four below their GPU targets, their family members, and the control.
METHODS = ("occlusion", "guided_backprop", "excitation_backprop", "contrastive_excitation_backprop",
           "gradient", "blur_occlusion")
PERTURBATION = ("occlusion", "blur_occlusion")
#: Operators whose output size depends on the data or that hand a value to the host: a device
#: sync each on a GPU.
HOST_READS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::_unique2", "aten::unique_dim",
              "aten::unique_consecutive", "aten::masked_select", "aten::is_nonzero")
CALL = "saliency_bench.profiled_call"
TOP = 12


def _summary(events, *, top: int = TOP) -> dict:
    """``{"count": n, "self_s": s}`` per operator name among ``events``, the ``top`` by self time."""
    by: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for e in events:
        by[e.name][0] += 1
        by[e.name][1] += e.self_cpu_time_total / 1e6
    rows = sorted(by.items(), key=lambda kv: -kv[1][1])[:top]
    return {n: {"count": int(c), "self_s": s} for n, (c, s) in rows}


def _union_s(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of ``(start_us, end_us)`` intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total / 1e6


def profile_call(fn: Callable[[], object], model, images: int, *, warmup: int = 1) -> dict:
    """Profile one call of ``fn`` (after ``warmup`` calls): the counts of the module docstring,
    per call and per image sent through ``model.net``."""
    device = torch.device(model.device)
    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync_lines: collections.Counter = collections.Counter()
    with images_through(model.net) as seen, profile(activities=activities, record_shapes=True) as prof:
        with record_function(CALL), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mode = torch.cuda.get_sync_debug_mode() if cuda else None
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode(mode)
            synchronize(device)  # the call ends when its last kernel does
        for w in caught:
            if "synchroniz" in str(w.message).lower():
                sync_lines[f"{Path(w.filename).name}:{w.lineno}"] += 1
    events = prof.events()
    call = next(e for e in events if e.name == CALL)
    lo, hi = call.time_range.start, call.time_range.end
    host = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU
            and lo <= e.time_range.start and e.time_range.end <= hi and e.name != CALL]
    aten = [e for e in host if e.name.startswith("aten::")]
    net = max(1, seen[0])
    # copies of tensors, not of the 0-dim tensors a Python number becomes beside one (``x > 0``)
    copies = [e for e in aten if e.name == "aten::copy_" and e.input_shapes and e.input_shapes[0]]
    reads = collections.Counter(e.name for e in aten if e.name in HOST_READS)
    out = {
        "images": images, "network_images": seen[0], "wall_s": (hi - lo) / 1e6,
        "aten_ops": len(aten), "aten_ops_per_network_image": len(aten) / net,
        "host_self_s": sum(e.self_cpu_time_total for e in aten) / 1e6,
        "copies": {"count": len(copies), "self_s": sum(e.self_cpu_time_total for e in copies) / 1e6},
        "host_reads": dict(reads), "host_reads_total": sum(reads.values()),
        "top_self": _summary(aten),
    }
    if cuda:
        runtime = [e for e in host if e.name.startswith("cuda")]
        dev = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA
               and lo <= e.time_range.start <= hi]
        kernels = [e for e in dev if not e.name.startswith(("Memcpy", "Memset"))]
        if not dev:  # a profiler that attaches the kernels to their launching operators only
            kernels = [types.SimpleNamespace(name=k.name, time_range=types.SimpleNamespace(start=0.0, end=k.duration))
                       for e in host for k in getattr(e, "kernels", ())]
        memcpy: dict[str, dict] = {}
        for e in dev:
            if e.name.startswith(("Memcpy", "Memset")):
                r = memcpy.setdefault(e.name, {"count": 0, "device_s": 0.0})
                r["count"] += 1
                r["device_s"] += (e.time_range.end - e.time_range.start) / 1e6
        by_kernel: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
        for e in kernels:
            by_kernel[e.name][0] += 1
            by_kernel[e.name][1] += (e.time_range.end - e.time_range.start) / 1e6
        busy = _union_s([(e.time_range.start, e.time_range.end) for e in dev]) if dev else None
        wall = (hi - lo) / 1e6
        out.update(
            kernels={"count": len(kernels), "per_network_image": len(kernels) / net,
                     "device_s": sum(v[1] for v in by_kernel.values()),
                     "top": {n[:160]: {"count": int(c), "device_s": s}
                             for n, (c, s) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1])[:TOP]}},
            memcpy=memcpy,
            runtime_syncs=dict(collections.Counter(e.name for e in runtime if "Synchronize" in e.name
                                                   or e.name in ("cudaMemcpy", "cudaMemcpy2D"))),
            launches=sum(1 for e in runtime if "Launch" in e.name),
            device_busy_s=busy, device_idle_fraction=None if busy is None or wall <= 0 else max(0.0, 1.0 - busy / wall),
            sync_lines=dict(sync_lines.most_common(TOP)), syncs_seen=sum(sync_lines.values()))
    return out


@contextlib.contextmanager
def _method_call(name: str, model, x: torch.Tensor, targets: torch.Tensor) -> Iterator[Callable[[], object]]:
    m = get_method(name)
    yield lambda: m.explain(model, x, targets)


def profile_section(model, x: torch.Tensor, targets: torch.Tensor, out: dict, save: Callable[[], None], *,
                    occlusion_images: int, forward_batch: int, per_eval: int, methods=METHODS, warmup: int = 1,
                    max_s: float = float("inf"), log: Callable[[str], None] = print) -> dict:
    """Fill ``out`` with one profiled call of each reference, method and peer: the backprop
    methods and gradient on ``x``, the occlusion family and Captum ``Occlusion`` on its first
    ``occlusion_images``, forward-only on ``forward_batch`` images (``x`` repeated). Once
    ``max_s`` seconds are spent, the calls still to come are recorded as skipped: the order of
    ``methods`` is the order of importance."""
    xo, to = x[:occlusion_images], targets[:occlusion_images]
    reps = -(-forward_batch // len(x))
    xf = x.repeat(reps, 1, 1, 1)[:forward_batch].contiguous(memory_format=torch.channels_last)
    perturbation = any(m in PERTURBATION for m in methods)  # then forward-only and Captum too
    calls: dict[str, tuple[Callable[[], contextlib.AbstractContextManager], int]] = {
        "forward+backward": (lambda: contextlib.nullcontext(lambda: forward_backward(model, x, targets)), len(x))}
    if perturbation:
        calls["forward"] = (lambda: contextlib.nullcontext(lambda: forward_only(model, xf)), len(xf))
    out.update(batch=len(x), occlusion_images=len(xo), forward_batch=len(xf), captum_perturbations_per_eval=per_eval,
               calls={})
    lib, info = peer_import("captum.attr") if perturbation else (None, {})
    for name in methods:
        xm, tm = (xo, to) if name in PERTURBATION else (x, targets)
        calls[name] = (functools.partial(_method_call, name, model, xm, tm), len(xm))
        if name in PERTURBATION and "captum.Occlusion" not in calls and "captum.Occlusion" not in out["calls"]:
            if lib is None:  # the peer right after our first perturbation method
                out["calls"]["captum.Occlusion"] = info
            else:
                calls["captum.Occlusion"] = (functools.partial(captum_occlusion_peer, lib, model, xo, to,
                                                               per_eval=per_eval), len(xo))
    t0 = time.perf_counter()
    for label, (make, images) in calls.items():
        def one() -> dict:
            with make() as fn:
                return profile_call(fn, model, images, warmup=warmup)

        spent = time.perf_counter() - t0
        r = {"skipped": f"time share spent ({spent:.0f} of {max_s:g} s)"} if spent > max_s else guarded(one)
        out["calls"][label] = r
        log(describe(f"{model.name} {label}", r))
        save()
    return out


def describe(label: str, r: dict) -> str:
    """One line of a profiled call: operators, copies and host reads per network image, and on
    CUDA the kernels, the device's idle fraction and the syncs."""
    if "error" in r or "aten_ops" not in r:
        return f"  {label}: {r.get('error') or r.get('status')}"
    net = max(1, r["network_images"])
    text = (f"  {label}: {r['aten_ops']} ops ({r['aten_ops_per_network_image']:.3g} per network image), "
            f"{r['copies']['count']} copies, {r['host_reads_total']} host reads")
    if "kernels" in r:
        idle = r["device_idle_fraction"]
        text += (f"; {r['kernels']['count']} kernels, {1e6 * r['kernels']['device_s'] / net:.3g} us of kernels per "
                 f"network image, device idle {'?' if idle is None else f'{100 * idle:.0f}'}%, "
                 f"{r['syncs_seen']} syncs")
    top = next(iter(r["top_self"]), None)
    return text + (f"; most self time: {top}" if top else "")


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="googlenet")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--occlusion-images", type=int, default=1)
    p.add_argument("--forward-batch", type=int, default=16, help="forward-only reference (the CPU's pass of copies)")
    p.add_argument("--per-eval", type=int, help="Captum Occlusion's perturbations_per_eval (default: "
                                                "forward batch / occlusion images)")
    p.add_argument("--size", type=int, help="input side (default: the model's)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods to profile")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    registration = load_builtins()
    device = torch.device(a.device)
    model = get_model(a.model, weights="random", device=a.device)
    x, t = random_inputs(model, max(a.batch, a.occlusion_images), a.size)
    meta = {**environment(device), "model": a.model, "weights": "random", "settings": vars(a),
            "registration": registration}
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"profile-{device.type}-{meta['date']}.json"
    doc = ResultsFile(out, {"meta": meta, "profile": {}})
    profile_section(model, x[:a.batch], t[:a.batch], doc.data["profile"], doc.save,
                    occlusion_images=a.occlusion_images, forward_batch=a.forward_batch,
                    per_eval=a.per_eval or max(1, a.forward_batch // a.occlusion_images),
                    methods=[m for m in a.methods.split(",") if m])
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()

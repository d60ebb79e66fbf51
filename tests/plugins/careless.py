"""A plugin file for the isolation tests: methods written by a careless author. Each returns a
legal map (the brightness of the input) and leaves the model or the process changed behind it,
as real plugins do by accident. Loaded with ``--plugin``.

``CHANGES`` maps each method to the words its failure reason must contain.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

import saliency_bench


def _map(x: torch.Tensor) -> torch.Tensor:
    return x.float().mean(1)


def _first_conv(net: nn.Module) -> tuple[str, nn.Module]:
    return next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))


def _first_norm(net: nn.Module) -> tuple[str, nn.Module]:
    return next((n, m) for n, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _block(net: nn.Module) -> tuple[str, nn.Module]:
    """A module in the middle of the network."""
    mods = [(n, m) for n, m in net.named_modules() if n and list(m.children())] \
        or [(n, m) for n, m in net.named_modules() if n]
    return mods[len(mods) // 2]


CHANGES: dict[str, str] = {}


def careless(name: str, change: str):
    def register(fn):
        CHANGES[name] = change
        return saliency_bench.method(name)(fn)
    return register


@careless("scales_weight", "parameter conv_stem.weight modified in place")
def scales_weight(model, x, targets):
    """Multiplies the first convolution's weights by 2 in place (under no_grad)."""
    with torch.no_grad():
        _first_conv(model.net)[1].weight.mul_(2)
    return _map(x)


@careless("scales_weight_data", "parameter conv_stem.weight modified in place (through .data)")
def scales_weight_data(model, x, targets):
    """The same through ``.data``, which bumps no version counter."""
    _first_conv(model.net)[1].weight.data.mul_(2)
    return _map(x)


def _last_linear(net: nn.Module) -> tuple[str, nn.Module]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]


@careless("negates_classifier_data", "parameter classifier.weight modified in place (through .data)")
def negates_classifier_data(model, x, targets):
    """Negates the classifier's weights through ``.data`` (a contrastive trick, never undone): the
    weights' norm is unchanged."""
    _last_linear(model.net)[1].weight.data.neg_()
    return _map(x)


@careless("reverses_filters_data", "parameter conv_stem.weight modified in place (through .data)")
def reverses_filters_data(model, x, targets):
    """Reverses the order of the first convolution's filters through ``.data``: the same values,
    so the same norm, in other places."""
    w = _first_conv(model.net)[1].weight.data
    w.copy_(w.flip(0).clone())
    return _map(x)


@careless("nudges_weight_data", "parameter conv_stem.weight modified in place (through .data)")
def nudges_weight_data(model, x, targets):
    """Adds a perturbation to the first convolution's weights through ``.data`` and subtracts it
    again: float rounding leaves some weights a last place away from where they were."""
    w = _first_conv(model.net)[1].weight.data
    noise = torch.full_like(w, 0.1)
    w.add_(noise).sub_(noise)
    return _map(x)


@careless("counts_batches_data", "num_batches_tracked modified in place (through .data)")
def counts_batches_data(model, x, targets):
    """Bumps a batch norm's integer batch counter through ``.data``."""
    _first_norm(model.net)[1].num_batches_tracked.data.add_(1)
    return _map(x)


@careless("replaces_parameter", "parameter conv_stem.weight replaced by another object")
def replaces_parameter(model, x, targets):
    """Assigns a new Parameter object (halved weights) to the first convolution."""
    conv = _first_conv(model.net)[1]
    conv.weight = nn.Parameter(conv.weight.detach() * 0.5, requires_grad=False)
    return _map(x)


@careless("forward_hook", "forward hook left on")
def forward_hook(model, x, targets):
    """Leaves a forward hook that doubles a block's output."""
    _block(model.net)[1].register_forward_hook(lambda m, i, o: o * 2)
    return _map(x)


@careless("forward_pre_hook", "forward pre-hook left on")
def forward_pre_hook(model, x, targets):
    """Leaves a forward pre-hook that zeroes the input of a block."""
    _block(model.net)[1].register_forward_pre_hook(lambda m, i: (i[0] * 0,))
    return _map(x)


@careless("backward_hook", "backward hook left on")
def backward_hook(model, x, targets):
    """Leaves a full backward hook that scales the gradient through a block."""
    _block(model.net)[1].register_full_backward_hook(lambda m, gi, go: tuple(g * 3 if g is not None else g
                                                                             for g in gi))
    return _map(x)


@careless("train_mode", "switched to train mode")
def train_mode(model, x, targets):
    """Calls ``net.train()`` and never switches back."""
    model.net.train()
    return _map(x)


@careless("requires_grad", "requires_grad of parameter")
def requires_grad(model, x, targets):
    """Switches gradients on for every parameter."""
    for p in model.net.parameters():
        p.requires_grad_(True)
    return _map(x)


@careless("bn_buffer", "running_mean modified in place")
def bn_buffer(model, x, targets):
    """Shifts a batch norm's running mean."""
    _first_norm(model.net)[1].running_mean.add_(0.5)
    return _map(x)


@careless("replaces_forward", "forward of")
def replaces_forward(model, x, targets):
    """Monkey-patches one block's forward on the instance."""
    _block(model.net)[1].forward = lambda *a, **k: a[0]
    return _map(x)


@careless("no_grad_globally", "grad mode left at False")
def no_grad_globally(model, x, targets):
    """``torch.set_grad_enabled(False)`` for the whole process."""
    torch.set_grad_enabled(False)
    return _map(x)


@careless("float64_default", "default dtype left at torch.float64")
def float64_default(model, x, targets):
    """``torch.set_default_dtype(torch.float64)``."""
    torch.set_default_dtype(torch.float64)
    return _map(x)


@careless("deterministic", "deterministic algorithms")
def deterministic(model, x, targets):
    """``torch.use_deterministic_algorithms(True)`` and left on."""
    torch.use_deterministic_algorithms(True)
    return _map(x)


@careless("autocast_left_on", "cpu autocast left at")
def autocast_left_on(model, x, targets):
    """Enters a bfloat16 autocast context and never leaves it."""
    torch.autocast("cpu", dtype=torch.bfloat16).__enter__()
    return _map(x).float()


@careless("anomaly_mode", "anomaly mode")
def anomaly_mode(model, x, targets):
    """``torch.autograd.set_detect_anomaly(True)`` for good."""
    torch.autograd.set_detect_anomaly(True)
    return _map(x)


@careless("global_hook", "global module hook left")
def global_hook(model, x, targets):
    """A global forward hook on every module of the process."""
    torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    return _map(x)


@careless("replaces_functional", "torch.nn.functional.softmax replaced")
def replaces_functional(model, x, targets):
    """Monkey-patches ``torch.nn.functional.softmax``."""
    torch.nn.functional.softmax = lambda t, dim=None, **k: t
    return _map(x)


@careless("flush_denormal", "flushing of denormal floats left at True (was False)")
def flush_denormal(model, x, targets):
    """``torch.set_flush_denormal(True)`` (tiny gradients become zero), and left on."""
    torch.set_flush_denormal(True)
    return _map(x)


@careless("patches_torch", "torch.relu replaced")
def patches_torch(model, x, targets):
    """Replaces a function of the ``torch`` namespace and never puts it back."""
    torch.relu = lambda t: t.clamp(min=0) * 2
    return _map(x)


@careless("patches_tensor_method", "torch.Tensor.relu added")
def patches_tensor_method(model, x, targets):
    """Shadows a tensor method (``torch.Tensor.relu``) with a Python function."""
    torch.Tensor.relu = lambda self: self.clamp(min=0) * 2
    return _map(x)


@careless("saved_tensors_hooks_left", "saved-tensors hooks left on")
def saved_tensors_hooks_left(model, x, targets):
    """Enters ``saved_tensors_hooks`` that zero what backward reads, and never leaves."""
    torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t * 0).__enter__()
    return _map(x)


@careless("patches_layer_class", "torch.nn.modules.conv.Conv2d._conv_forward replaced")
def patches_layer_class(model, x, targets):
    """Replaces what every convolution calls (``nn.Conv2d._conv_forward``) with a scaled copy."""
    conv = torch.nn.Conv2d._conv_forward
    torch.nn.Conv2d._conv_forward = lambda self, inp, weight, bias: conv(self, inp, weight * 1.5, bias)
    return _map(x)


@careless("patches_numpy", "numpy.mean replaced")
def patches_numpy(model, x, targets):
    """Replaces ``np.mean``, which scoring uses, with a median."""
    np.mean = lambda a, *args, **kw: np.median(a, *args, **kw)
    return _map(x)


@careless("function_mode_left", "torch function mode left entered")
def function_mode_left(model, x, targets):
    """Enters a TorchFunctionMode that doubles every convolution's output, and never leaves."""
    from torch.overrides import TorchFunctionMode

    class Doubles(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            return out * 2 if func is torch.nn.functional.conv2d else out

    Doubles().__enter__()
    return _map(x)


@careless("numpy_raises", "NumPy floating-point error handling left at")
def numpy_raises(model, x, targets):
    """``np.seterr(all="raise")`` (a debugging leftover): later scoring would raise on 0/0."""
    np.seterr(all="raise")
    return _map(x)


@careless("warnings_as_errors", "warnings turned into errors left at")
def warnings_as_errors(model, x, targets):
    """``warnings.simplefilter("error")``, left on: any later warning would raise."""
    import warnings

    warnings.simplefilter("error")
    return _map(x)


@careless("exits", "raised SystemExit: 3")
def exits(model, x, targets):
    """A stray ``sys.exit(3)``."""
    sys.exit(3)


@careless("exits_after_change", "changed the model")
def exits_after_change(model, x, targets):
    """Leaves a hook, then exits: the change is what it is failed for."""
    _block(model.net)[1].register_forward_hook(lambda m, i, o: o * 0)
    sys.exit(1)


# Methods that write into their own inputs: allowed (each gets copies), so they succeed, and the
# methods after them see the inputs as loaded.
HARMLESS = ("writes_input", "writes_input_data", "writes_targets")


@saliency_bench.method("writes_input")
def writes_input(model, x, targets):
    """Brightness, then halves its input in place."""
    m = _map(x).clone()
    x.mul_(0.5)
    return m


@saliency_bench.method("writes_input_data")
def writes_input_data(model, x, targets):
    """Brightness, then zeroes its input through ``.data``."""
    m = _map(x).clone()
    x.data.zero_()
    return m


@saliency_bench.method("writes_targets")
def writes_targets(model, x, targets):
    """Brightness, after setting every target to class 0 in place."""
    targets.indices.zero_()
    return _map(x)


_BUFFERS: dict = {}


@saliency_bench.method("reuses_buffer")
def reuses_buffer(model, x, targets):
    """Brightness, written into an output buffer it keeps and rewrites at every call (a speed
    trick): the maps it returned must be the harness's own copies."""
    b, _, h, w = x.shape
    buf = _BUFFERS.get((h, w))
    if buf is None or buf.shape[0] < b:
        buf = _BUFFERS[(h, w)] = torch.empty(max(b, 4), h, w)
    torch.mean(x.float(), 1, out=buf[:b])
    return buf[:b]


@saliency_bench.method("plain_brightness")
def plain_brightness(model, x, targets):
    """Brightness, in a new tensor each call."""
    return _map(x)


@saliency_bench.benchmark("writes_its_view")
class WritesItsView(saliency_bench.Benchmark):
    """A benchmark with the model in the loop and a view of its own, which it zeroes in place after
    reading it: what the next method's batch gets must be the view as made."""

    uses_model = True
    views = ("own",)
    columns = ("writes_its_view",)

    def make_view(self, name, image, size):
        from saliency_bench.imageio import to_input

        return to_input(image, size)

    def score_batch(self, samples, outputs, input_size, query=None):
        v = query.view("own")
        out = [{"view_sum": float(v[i].double().sum()), "map_sum": float(np.asarray(o, np.float64).sum())}
               for i, o in enumerate(outputs)]
        v.zero_()
        return out

    def summarize(self, records, samples):
        return {"writes_its_view": {"value": float(len(records)), "ci": None, "n": len(records), "unit": "",
                                    "note": ""}}


class _Counts(saliency_bench.Benchmark):
    def summarize(self, records, samples):
        return {self.name: {"value": float(len(records)), "ci": None, "n": len(records), "unit": "", "note": ""}}


@saliency_bench.benchmark("zeroes_mask")
class ZeroesMask(_Counts):
    """Clears each sample's ground-truth mask in place (refused: the arrays are read-only)."""

    columns = ("zeroes_mask",)

    def score_batch(self, samples, outputs, input_size):
        for s in samples:
            s.mask[:] = False
        return [{"n": 1} for _ in samples]


@saliency_bench.benchmark("rebinds_mask")
class RebindsMask(_Counts):
    """Replaces each sample's mask by its complement (its own copy of the sample: allowed)."""

    columns = ("rebinds_mask",)

    def score_batch(self, samples, outputs, input_size):
        for s in samples:
            s.mask = ~s.mask
            s.flags["difficult"] = not s.flags.get("difficult", False)
        return [{"n": int(s.mask.sum())} for s in samples]


@saliency_bench.benchmark("writes_its_maps")
class WritesItsMaps(_Counts):
    """Negates the maps it is given, in place (its own copies: allowed)."""

    columns = ("writes_its_maps",)

    def score_batch(self, samples, outputs, input_size):
        outputs *= -1
        return [{"n": 1} for _ in samples]


@saliency_bench.benchmark("careless_query")
class CarelessQuery(saliency_bench.Benchmark):
    """A benchmark with the model in the loop that leaves the network in train mode after its
    forward passes (the model it was handed is not the benchmark's to change)."""

    uses_model = True
    columns = ("careless_query",)

    def score_batch(self, samples, outputs, input_size, query=None):
        p = query.probabilities(query.x, list(range(len(query))))
        query.model.net.train()
        return [{"p": float(v)} for v in p]

    def summarize(self, records, samples):
        return {"careless_query": {"value": float(len(records)), "ci": None, "n": len(records), "unit": "",
                                   "note": ""}}


@saliency_bench.benchmark("leaves_float64")
class LeavesFloat64(_Counts):
    """A benchmark without the model that sets torch's default dtype to float64 while scoring (in
    the main process, with no scoring workers) and leaves it so: the next batch's methods would
    make float64 tensors."""

    columns = ("leaves_float64",)

    def score_batch(self, samples, outputs, input_size):
        torch.set_default_dtype(torch.float64)
        return [{"n": 1} for _ in samples]

"""Meaningful perturbation: the learned mask of Fong & Vedaldi, "Interpretable Explanations of
Black Boxes by Meaningful Perturbation", ICCV 2017, eq. 3-4 (deletion game, blur perturbation of
eq. 2, jitter of §4)::

    min_m  l1 ||1 - m||_1  +  l2 sum_u ||grad m(u)||^beta  +  E_tau[ f_c( Phi(x0(. - tau), M) ) ]
    Phi(x, M) = M * x + (1 - M) * blur(x, sigma0),    M = blur(upsample(m, delta), sigma_m)

``f_c`` is the target set's summed softmax probability; the heatmap is ``1 - M`` (deletion) or
``M`` (preservation) at the input resolution. The defaults are the authors' released
``optimize_mask.py``; where ours differs, the blurred and jittered views, the initialisation and
the diagnostics in ``info``: docs/PROTOCOLS.md §6.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
import torch.nn.functional as F

import saliency_bench
from saliency_bench.targets import Targets, target_probability

from ._perturb import (blurred_jittered_original, blurred_original, check_blur_source, check_jitter_mode,
                       gaussian_blur, jittered_original, null_image, perturbation_scores, soft_discs)

DELETION, PRESERVATION = "deletion", "preservation"

#: The inputs the mask reads from the original image (see :mod:`._perturb`).
VIEWS = {"blurred": blurred_original, "jittered": jittered_original, "blurred_jittered": blurred_jittered_original}

#: (l1, l2) per layer alias for the intermediate-layer masks (Fong & Vedaldi 2017, supplementary).
LAYER_DEFAULTS: dict[str, dict[str, tuple[float, float]]] = {
    "alexnet": {"pool1": (1e-4, 1e-2), "pool2": (5e-3, 1e-2), "relu3": (5e-3, 1e-2),
                "relu4": (5e-3, 1e-2), "pool5": (1e-2, 1e-3)},
    "vgg16": {"pool1": (5e-5, 1e-2), "pool2": (1e-4, 1e-2), "pool3": (1e-4, 1e-2),
              "pool4": (5e-3, 1e-2), "pool5": (1e-2, 1e-3)},
}


@dataclasses.dataclass(frozen=True)
class MaskSettings:
    """The mask's settings (docs/PROTOCOLS.md §6), checked once when made.

    ``top_k > 0`` replaces the targets by the ``top_k`` classes the model predicts (the
    localisation setting); ``l1``/``l2`` None: the per-layer table for ``layer``, else 1e-4/1e-2;
    ``mask_size`` None: :func:`mask_side`; ``init``: ``"circle"`` (the radius search over
    ``0:radius_step:radius_max``) or ``"ones"`` (nothing perturbed); ``chunk``: perturbed copies
    per forward in the radius search.
    """

    game: str = DELETION
    top_k: int = 0
    iterations: int = 300
    lr: float = 0.1
    l1: float | None = None
    l2: float | None = None
    beta: float = 3.0
    delta: int = 8
    mask_size: int | None = None
    mask_sigma: float = 5.0
    blur_sigma: float = 10.0
    blur_source: str = "original"
    jitter: int = 4
    jitter_mode: str = "resize"
    init: str = "circle"
    radius_step: float = 5.0
    radius_max: float = 175.0
    init_threshold: float = 0.01
    layer: str | None = None
    seed: int = 0
    amp: bool = False
    cuda_graph: bool = False
    chunk: int = 128

    def __post_init__(self) -> None:
        if self.game not in (DELETION, PRESERVATION):
            raise ValueError(f"game must be '{DELETION}' or '{PRESERVATION}', not {self.game!r}")
        if self.init not in ("circle", "ones"):
            raise ValueError(f"init must be 'circle' or 'ones', not {self.init!r}")
        check_blur_source(self.blur_source)
        check_jitter_mode(self.jitter_mode)


# --------------------------------------------------------------------------------------------
# Pieces of the objective
# --------------------------------------------------------------------------------------------
def mask_side(input_side: int, delta: int = 8) -> int:
    """Side of the coarse mask for an input side: ``4 * ceil(input / (4 * delta))`` (224 -> 28,
    227 -> 32), so that the mask upsampled by ``delta`` covers the whole input."""
    return 4 * math.ceil(input_side / (4 * delta))


def total_variation(m: torch.Tensor, beta: float) -> torch.Tensor:
    """``[B]`` ``sum_u (sqrt(dx(u)^2 + dy(u)^2))^beta`` with forward differences (0 past the last
    row/column), as the released ``tv``. Written as ``(dx^2 + dy^2)^(beta/2)``: no infinite
    derivative of the square root where the mask is flat."""
    dy = F.pad(m[..., 1:, :] - m[..., :-1, :], (0, 0, 0, 1))
    dx = F.pad(m[..., :, 1:] - m[..., :, :-1], (0, 1, 0, 0))
    return (dy * dy + dx * dx).clamp_min(1e-12).pow(beta / 2).flatten(1).sum(1)


def smooth_mask(m: torch.Tensor, size: tuple[int, int], delta: int, sigma: float) -> torch.Tensor:
    """``M = blur(upsample(m, delta), sigma)``, centre-cropped to ``size``: ``[B,1,H,W]``."""
    up = F.interpolate(m, scale_factor=delta, mode="nearest") if delta > 1 else m
    up = gaussian_blur(up, sigma)
    h, w = size
    top, left = (up.shape[-2] - h) // 2, (up.shape[-1] - w) // 2
    return up[..., top:top + h, left:left + w]


def mask_heatmap(m: torch.Tensor, size: tuple[int, int], delta: int, sigma: float, game: str) -> torch.Tensor:
    """``[B,H,W]`` the heatmap of a learned mask: ``1 - M`` (deletion) or ``M`` (preservation).

    ``M`` is smoothed in float64 and rounded to float32: the blur's weights sum to 1 within
    1e-16, so a plateau of ``m`` comes out exactly 0 or 1 and its pixels tie exactly (float32
    arithmetic leaves them a few ulps apart, and the maximum of a plateau would be decided by
    rounding)."""
    mm = smooth_mask(m.double(), size, delta, sigma)[:, 0].clamp(0, 1).float()
    return 1 - mm if game == DELETION else mm


def _to_mask_grid(keep: torch.Tensor, side: tuple[int, int], delta: int) -> torch.Tensor:
    """Input-resolution keep map ``[B,1,H,W]`` -> coarse mask ``[B,1,s,s]``: the inverse of
    :func:`smooth_mask`'s geometry (pad to ``s * delta`` centrally, average ``delta x delta``)."""
    h, w = keep.shape[-2:]
    ph, pw = side[0] * delta - h, side[1] * delta - w
    keep = F.pad(keep, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
    return F.avg_pool2d(keep, delta) if delta > 1 else keep


def jitter_offsets(seed: int, batch: int, steps: int, count: int, device) -> torch.Tensor:
    """``[steps, B, 2]`` integer offsets drawn uniformly from ``{0..count-1}``; image ``i`` uses
    stream ``seed + i``.

    A counter-based integer hash (no generator state), so offsets depend only on
    ``(seed + i, step, axis)``: batching does not change them, and they are made on the device.
    """
    if count <= 1:
        return torch.zeros(steps, batch, 2, dtype=torch.long, device=device)
    t = torch.arange(steps, device=device).view(-1, 1, 1)
    b = torch.arange(batch, device=device).view(1, -1, 1)
    a = torch.arange(2, device=device).view(1, 1, 2)
    h = ((int(seed) + b) % (1 << 31) * 0x9E3779B1 + t * 2 + a) & 0xFFFFFFFF
    for _ in range(3):  # "lowbias32"-style mixing; products stay below 2^63
        h = (((h >> 16) ^ h) * 0x45D9F3B) & 0xFFFFFFFF
    h = (h >> 16) ^ h
    return h % count


def _crop(img: torch.Tensor, off: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-image crops ``img[b, :, oy:oy+H, ox:ox+W]`` of a padded ``[B,C,H+J,W+J]`` batch."""
    h, w = size
    b = img.shape[0]
    rows = off[:, 0, None] + torch.arange(h, device=img.device)  # [B,H]
    cols = off[:, 1, None] + torch.arange(w, device=img.device)  # [B,W]
    bi = torch.arange(b, device=img.device)
    out = img[bi[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # [B,H,W,C]
    return out.permute(0, 3, 1, 2)


def _objective(m: torch.Tensor, f: torch.Tensor, game: str, l1: float, l2: float, beta: float) -> torch.Tensor:
    """``[B]`` the paper's objective given the (expected) target probability ``f``."""
    area = (1 - m) if game == DELETION else m
    reg = l1 * area.abs().flatten(1).sum(1) + l2 * total_variation(m, beta)
    return reg + f if game == DELETION else reg - f


def _autocast(x: torch.Tensor, amp: bool, cache: bool = True):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, cache_enabled=cache)


def _layer_defaults(model, layer: str) -> tuple[float, float] | None:
    path = model.layer_name(layer)
    table = LAYER_DEFAULTS.get(model.name, {})
    for alias, target in model.aliases.items():
        if target == path and alias in table:
            return table[alias]
    return None


# --------------------------------------------------------------------------------------------
# The radius search
# --------------------------------------------------------------------------------------------
def circular_init(net, x: torch.Tensor, null: torch.Tensor, targets: Targets, game: str,
                  radii: torch.Tensor, threshold: float, disc_sigma: float,
                  chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep [B,1,H,W], radius [B])``: the initial keep map at input resolution and the radius
    chosen (-1 where none qualified: the largest radius starts the mask, as the released code's
    ``radii[-1]``).

    Deletion perturbs a centred disc and keeps the rest; preservation keeps the disc. All radii
    of all images are scored in batched forwards. An image whose blurred copy does not score
    lower than itself (``f(x) <= f(all perturbed)``) has no normalised score: no radius qualifies.
    """
    h, w = x.shape[-2:]
    centre = torch.tensor([[w // 2, h // 2]], device=x.device, dtype=torch.float32).expand(len(radii), 2)
    discs = soft_discs(centre, radii, (h, w), disc_sigma)  # [R,H,W], 1 inside
    perturb = discs if game == DELETION else 1 - discs
    f_r = perturbation_scores(net, x, null, perturb, targets, target_probability, chunk)  # [B,R]
    with torch.no_grad():
        both = net(torch.cat([x, null]))
        f_x, f_null = target_probability(both, Targets(targets).repeat(2)).float().chunk(2)
    denom = (f_x - f_null)[:, None]
    norm = (f_r - f_null[:, None]) / denom.where(denom > 0, torch.ones_like(denom))
    ok = (norm <= threshold) if game == DELETION else (norm >= 1 - threshold)
    ok &= denom > 0
    found = ok.any(dim=1)
    first = torch.where(found, ok.float().argmax(dim=1), len(radii) - 1)  # the smallest; else the largest
    keep = 1 - perturb[first]
    radius = torch.where(found, radii[first], torch.full_like(radii[first], -1.0))
    return keep[:, None], radius


# --------------------------------------------------------------------------------------------
# The optimisation
# --------------------------------------------------------------------------------------------
def jitter_images(x: torch.Tensor, null: torch.Tensor, s: MaskSettings, blurred: torch.Tensor | None,
                  jittered: torch.Tensor | None,
                  blurred_jittered: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(image, blurred image, offsets drawn from {0..count-1})`` the jitter crops come from.

    ``resize`` (the authors'): the views of the original at ``(H + J, W + J)``; without them
    (a direct call), ``x`` and ``null`` resized bilinearly to that size; offsets ``{0..J-1}``
    (``np.random.randint(J)``). ``pad``: ``x`` extended by edge replication on the right and
    bottom (its blurred copy likewise: the view padded, or the padded input blurred), offsets
    ``{0..J}``.
    """
    h, w = x.shape[-2:]
    jitter, blur_sigma, blur_source = max(0, int(s.jitter)), s.blur_sigma, s.blur_source
    if s.jitter_mode == "resize":
        size = (h + jitter, w + jitter)
        xj = jittered.to(x) if jittered is not None else \
            F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if blur_source == "input":
            nj = gaussian_blur(xj, blur_sigma)
        elif blurred_jittered is not None:
            nj = blurred_jittered.to(x)
        elif blurred is not None:
            nj = F.interpolate(null, size=size, mode="bilinear", align_corners=False)
        else:  # no view at all: the paper-text reading throughout
            nj = gaussian_blur(xj, blur_sigma)
        if xj.shape[-2:] != size or nj.shape[-2:] != size:
            raise ValueError(f"jitter views of size {tuple(xj.shape[-2:])}/{tuple(nj.shape[-2:])}, expected {size}")
        return xj, nj, jitter
    xj = F.pad(x, (0, jitter, 0, jitter), mode="replicate")
    if blur_source == "original" and blurred is not None:
        nj = F.pad(null, (0, jitter, 0, jitter), mode="replicate")
    else:
        nj = gaussian_blur(xj, blur_sigma)
    return xj, nj, jitter + 1


def learn_mask(model, x: torch.Tensor, targets: Targets, settings: MaskSettings | None = None, *,
               blurred: torch.Tensor | None = None, jittered: torch.Tensor | None = None,
               blurred_jittered: torch.Tensor | None = None, **overrides) -> tuple[torch.Tensor, dict]:
    """Learn a batch of perturbation masks; returns ``(heatmaps [B,h,w], info)``.

    ``settings`` (default :class:`MaskSettings`), with any of its fields overridden by keyword.
    ``blurred``, ``jittered``, ``blurred_jittered``: the views of the original image the harness
    makes (docs/PROTOCOLS.md §6), None in a direct call.
    """
    s = dataclasses.replace(settings or MaskSettings(), **overrides)
    net = model.net
    x = x.detach()
    with torch.no_grad(), _autocast(x, s.amp):
        logits0 = net(x).float()
    if s.top_k > 0:
        targets = logits0.topk(s.top_k, dim=1).indices
    targets = Targets(targets, x.device)
    score_before = target_probability(logits0, targets)
    defaults = (_layer_defaults(model, s.layer) if s.layer else None) or (1e-4, 1e-2)
    l1 = defaults[0] if s.l1 is None else float(s.l1)
    l2 = defaults[1] if s.l2 is None else float(s.l2)
    game, beta, amp, delta, mask_sigma = s.game, s.beta, s.amp, s.delta, s.mask_sigma
    if s.layer:
        return _learn_layer_mask(model, x, targets, dataclasses.replace(s, l1=l1, l2=l2), score_before)

    b, _, h, w = x.shape
    side = (s.mask_size, s.mask_size) if s.mask_size else (mask_side(h, delta), mask_side(w, delta))
    null = null_image(x, blurred, s.blur_sigma, s.blur_source)
    jit = max(0, int(s.jitter))
    if jit:
        x_big, null_big, count = jitter_images(x, null, s, blurred, jittered, blurred_jittered)
        diff_big = x_big - null_big  # Phi = null + M * (x - null): one fused multiply-add per step
    else:
        null_big, diff_big, count = null, x - null, 1

    if s.init == "circle":
        radii = torch.arange(0.0, s.radius_max + 1e-6, s.radius_step, device=x.device)
        keep, radius = circular_init(net, x, null, targets, game, radii, s.init_threshold, s.blur_sigma, s.chunk)
        m0 = _to_mask_grid(keep, side, delta)
    else:
        m0 = torch.ones(b, 1, *side, device=x.device)
        radius = torch.full((b,), float("nan"), device=x.device)

    def objective_at(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), _autocast(x, amp):
            phi = null + smooth_mask(m, (h, w), delta, mask_sigma) * (x - null)
            f = target_probability(net(phi).float(), targets)
        return _objective(m, f, game, l1, l2, beta), f

    loss_init, _ = objective_at(m0)
    offsets = jitter_offsets(s.seed, b, s.iterations, count, x.device)
    m = m0.clone().requires_grad_(True)
    graphed = bool(s.cuda_graph) and x.is_cuda and s.iterations > _GRAPH_WARMUP

    def step(off: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        with _autocast(x, amp, cache=not graphed):
            mm = smooth_mask(m, (h, w), delta, mask_sigma)
            if jit:
                phi = _crop(null_big, off, (h, w)) + mm * _crop(diff_big, off, (h, w))
            else:
                phi = null_big + mm * diff_big
            f = target_probability(net(phi).float(), targets)
        loss = _objective(m, f, game, l1, l2, beta)
        loss.sum().backward()  # a sum: each image's gradient is its own
        opt.step()
        with torch.no_grad():
            m.clamp_(0, 1)

    with torch.enable_grad():
        if graphed:
            _optimise_graphed(step, m, s.lr, offsets)
        else:
            # on a GPU, Adam's arithmetic is the graph's (capturable: its step count on the device),
            # so the two loops compute the same numbers; on the CPU, plain Adam
            opt = torch.optim.Adam([m], lr=s.lr, capturable=x.is_cuda)
            for t in range(s.iterations):
                opt.zero_grad(set_to_none=True)
                step(offsets[t], opt)
    m = m.detach()
    loss_final, score_after = objective_at(m)
    heat = mask_heatmap(m, (h, w), delta, mask_sigma, game)
    converged = torch.isfinite(loss_final) & torch.isfinite(m.flatten(1)).all(1) & (loss_final < loss_init)
    info = {"loss": loss_final, "loss_init": loss_init, "score_before": score_before,
            "score_after": score_after, "score_blurred": _score(net, null, targets, amp),
            "init_radius": radius, "converged": converged}
    return heat, info


#: Eager steps before the capture (autograd and the allocator warm up on a side stream).
_GRAPH_WARMUP = 3


def _optimise_graphed(step, m: torch.Tensor, lr: float, offsets: torch.Tensor) -> None:
    """The same Adam loop, its step captured once as a CUDA graph and replayed.

    The first ``_GRAPH_WARMUP`` steps run eagerly on a side stream (they are real steps, with
    their own offsets), then one step is captured and replayed for the rest with the step's
    offsets copied into a static tensor before each replay. Adam runs ``capturable`` (its step
    count on the device), the autocast cast cache is off: nothing leaves the device.
    """
    opt = torch.optim.Adam([m], lr=lr, capturable=True)
    off = offsets[0].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for t in range(_GRAPH_WARMUP):
            off.copy_(offsets[t])
            opt.zero_grad(set_to_none=True)
            step(off, opt)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step(off, opt)  # recorded, not run
    for t in range(_GRAPH_WARMUP, len(offsets)):
        off.copy_(offsets[t])
        graph.replay()
    torch.cuda.current_stream().synchronize()


def _score(net, x: torch.Tensor, targets: Targets, amp: bool) -> torch.Tensor:
    with torch.no_grad(), _autocast(x, amp):
        return target_probability(net(x).float(), targets)


def _learn_layer_mask(model, x: torch.Tensor, targets: Targets, s: MaskSettings, score_before: torch.Tensor):
    """The mask on an activation (supplementary §"intermediate layers"): ``a * m``, zero fill;
    ``s.l1``/``s.l2`` already resolved."""
    net = model.net
    module = model.layer(s.layer)
    game, l1, l2, beta, amp = s.game, s.l1, s.l2, s.beta, s.amp
    state: dict[str, torch.Tensor | None] = {"m": None, "shape": None}

    def hook(_mod, _inp, out):
        state["shape"] = out.shape
        return out if state["m"] is None else out * state["m"].to(out.dtype)

    handle = module.register_forward_hook(hook)
    try:
        _score(net, x, targets, amp)  # learns the activation's shape
        b, _, ah, aw = state["shape"]
        m0 = torch.ones(b, 1, ah, aw, device=x.device)

        def objective_at(mv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            state["m"] = mv
            f = _score(net, x, targets, amp)
            return _objective(mv, f, game, l1, l2, beta), f

        loss_init, _ = objective_at(m0)
        m = m0.clone().requires_grad_(True)
        opt = torch.optim.Adam([m], lr=s.lr)
        state["m"] = m
        with torch.enable_grad():
            for _ in range(s.iterations):
                with _autocast(x, amp):
                    f = target_probability(net(x).float(), targets)
                loss = _objective(m, f, game, l1, l2, beta)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                with torch.no_grad():
                    m.clamp_(0, 1)
        m = m.detach()
        loss_final, score_after = objective_at(m)
        state["m"] = torch.zeros_like(m)
        score_blurred = _score(net, x, targets, amp)  # the whole activation perturbed (zeroed)
    finally:
        handle.remove()
    heat = 1 - m[:, 0] if game == DELETION else m[:, 0]
    converged = torch.isfinite(loss_final) & torch.isfinite(m.flatten(1)).all(1) & (loss_final < loss_init)
    info = {"loss": loss_final, "loss_init": loss_init, "score_before": score_before,
            "score_after": score_after, "score_blurred": score_blurred,
            "init_radius": torch.full_like(score_before, float("nan")), "converged": converged}
    return heat, info


# --------------------------------------------------------------------------------------------
# The registered methods
# --------------------------------------------------------------------------------------------
@saliency_bench.method("mask", views=VIEWS, cost=lambda iterations=300, **_: iterations + 36, variants=[
    saliency_bench.param(top_k=5, l1=1e-3, beta=2.0, id="mask_top5", doc=(
        "Meaningful perturbation, localisation setting: delete the top-5 predicted classes' summed "
        "probability, l1 = 1e-3, beta = 2 (Fong & Vedaldi 2017 §5.2; the released --loc_params)")),
    saliency_bench.param(game=PRESERVATION, id="mask_preserve", doc=(
        "Meaningful perturbation, preservation game: the smallest blur mask that keeps the target's "
        "probability (eq. 3 with the sign of the score flipped; not in the released Caffe code)")),
])
def mask(model, x: torch.Tensor, targets: Targets, *, game: str = DELETION, top_k: int = 0,
         iterations: int = 300, lr: float = 0.1,
         l1: float | None = None, l2: float | None = None, beta: float = 3.0, jitter: int = 4,
         jitter_mode: str = "resize", mask_sigma: float = 5.0, blur_sigma: float = 10.0,
         blur_source: str = "original", delta: int = 8, mask_size: int | None = None, init: str = "circle",
         layer: str | None = None, seed: int = 0, amp: bool = False, cuda_graph: bool = False, chunk: int = 128,
         blurred: torch.Tensor | None = None, jittered: torch.Tensor | None = None,
         blurred_jittered: torch.Tensor | None = None):
    """Meaningful perturbation (Fong & Vedaldi 2017, eq. 3-4): ``1 - M`` of the learned blur mask
    (deletion game) as the authors' ``optimize_mask.py`` ran it; ``game="preservation"`` gives the
    kept mask ``M``, ``top_k=5`` deletes the top-5 predicted classes. l1/l2 default to 1e-4/1e-2
    (input) or the per-layer table (``layer=pool3`` ...). Declared variants: ``mask_top5``
    (top_k=5, l1=1e-3, beta=2, the released ``--loc_params``) and ``mask_preserve``. Options and
    where ours differs: docs/PROTOCOLS.md §6."""
    settings = MaskSettings(game=game, top_k=top_k, iterations=iterations, lr=lr, l1=l1, l2=l2, beta=beta,
                            jitter=jitter, jitter_mode=jitter_mode, mask_sigma=mask_sigma,
                            blur_sigma=blur_sigma, blur_source=blur_source, delta=delta,
                            mask_size=mask_size, init=init, layer=layer, seed=seed, amp=amp,
                            cuda_graph=cuda_graph, chunk=chunk)
    return learn_mask(model, x, targets, settings, blurred=blurred, jittered=jittered,
                      blurred_jittered=blurred_jittered)

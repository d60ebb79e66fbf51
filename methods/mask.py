"""Meaningful perturbation: the learned mask of Fong & Vedaldi, "Interpretable Explanations of
Black Boxes by Meaningful Perturbation", ICCV 2017 (§3-4; PROTOCOLS.md §6).

Deletion game (eq. 3-4, with the blur perturbation of eq. 2 and the jitter of §4)::

    min_m  l1 ||1 - m||_1  +  l2 sum_u ||grad m(u)||^beta  +  E_tau[ f_c( Phi(x0(. - tau), M) ) ]
    Phi(x, M) = M * x + (1 - M) * blur(x, sigma0 = 10),    M = blur(upsample(m, delta = 8), sigma_m = 5)

``m`` lives on a coarse grid (28x28 for a 224 input), ``m = 1`` keeps a pixel, ``f_c`` is the
softmax probability of the target (of the target set: the sum of its classes' probabilities),
optimised with Adam (lr 0.1, 300 steps), ``m`` clipped to [0, 1] after every step. The
preservation game minimises ``l1 ||m||_1 + l2 TV(m) - E_tau[f_c(Phi)]``. The heatmap is
``1 - M`` (deletion) or ``M`` (preservation) at the input resolution.

Choices, where the paper leaves room (each a parameter):

* ``mask_sigma = 5``: the released code smooths the upsampled mask with PIL's
  ``GaussianBlur(radius=5)``, whose radius *is* the Gaussian's standard deviation.
* Mask side: ``4 * ceil(input / (4 * delta))`` — 28 for a 224 input, 32 for AlexNet's 227 —
  so the upsampled mask (256 px for 227) covers the whole input; it is centre-cropped to it.
* Jitter: the image and its blurred copy are extended by ``jitter`` pixels (edge replication,
  right and bottom) and cropped at an offset drawn uniformly from ``{0..jitter}`` per image,
  per axis and per step (the released code resizes to ``224 + jitter`` and crops the same way).
  Image ``i`` of a batch draws its offsets from stream ``seed + i``, so a batch gives exactly
  what the images give one at a time with seeds ``seed, seed + 1, ...``.
* Initialisation (the released ``test_circular_masks``): centred discs of radius 0:5:175,
  blurred with sigma 10; the smallest radius whose normalised score
  ``(f(disc) - f(all perturbed)) / (f(x) - f(all perturbed))`` is ``<= 0.01`` (deletion;
  ``>= 0.99`` preservation) starts the mask; if none qualifies (or blurring does not lower
  the score), the whole image starts perturbed. The disc map is averaged down to the mask grid.
* The smoothing ``blur(upsample(m))`` is differentiated exactly (autograd); the released code's
  hand-written gradient skipped it.
* Intermediate layers (``layer=``): a mask of the activation's size, shared by its channels,
  multiplies the activation (the constant-zero perturbation); no upsampling, blur or jitter;
  starts at ``m = 1``; l1/l2 from the per-layer tables of the supplementary material (VGG16 and
  AlexNet), the input-space defaults elsewhere.

Diagnostics per image (``info``): ``loss`` (the objective at the final mask, without jitter),
``loss_init`` (the same at the initial mask), ``score_before`` (``f_c(x)``), ``score_after``
(``f_c(Phi(x, M))``), ``score_blurred`` (``f_c`` of the whole image perturbed), ``init_radius``
(-1: the whole-image fallback; NaN for layer masks) and ``converged`` (finite and lower than at
the start; a NaN or a loss that did not decrease is reported, never hidden).

Everything is batched: one ``[B,1,28,28]`` tensor, one Adam state (Adam is element-wise and
the objective a sum over images, so images do not interact), per-image jitter and init, no
host synchronisation inside the loop.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

import saliency_bench
from saliency_bench.targets import target_probability

from ._perturb import gaussian_blur, perturbation_scores, soft_discs

DELETION, PRESERVATION = "deletion", "preservation"

#: (l1, l2) per layer alias for the intermediate-layer masks (Fong & Vedaldi 2017, supplementary).
LAYER_DEFAULTS: dict[str, dict[str, tuple[float, float]]] = {
    "alexnet": {"pool1": (1e-4, 1e-2), "pool2": (5e-3, 1e-2), "relu3": (5e-3, 1e-2),
                "relu4": (5e-3, 1e-2), "pool5": (1e-2, 1e-3)},
    "vgg16": {"pool1": (5e-5, 1e-2), "pool2": (1e-4, 1e-2), "pool3": (1e-4, 1e-2),
              "pool4": (5e-3, 1e-2), "pool5": (1e-2, 1e-3)},
}


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


def _to_mask_grid(keep: torch.Tensor, side: tuple[int, int], delta: int) -> torch.Tensor:
    """Input-resolution keep map ``[B,1,H,W]`` -> coarse mask ``[B,1,s,s]``: the inverse of
    :func:`smooth_mask`'s geometry (pad to ``s * delta`` centrally, average ``delta x delta``)."""
    h, w = keep.shape[-2:]
    ph, pw = side[0] * delta - h, side[1] * delta - w
    keep = F.pad(keep, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
    return F.avg_pool2d(keep, delta) if delta > 1 else keep


def jitter_offsets(seed: int, batch: int, steps: int, jitter: int, device) -> torch.Tensor:
    """``[steps, B, 2]`` integer offsets in ``{0..jitter}``; image ``i`` uses stream ``seed + i``.

    A counter-based integer hash (no generator state), so offsets depend only on
    ``(seed + i, step, axis)``: batching does not change them, and they are made on the device.
    """
    if jitter <= 0:
        return torch.zeros(steps, batch, 2, dtype=torch.long, device=device)
    t = torch.arange(steps, device=device).view(-1, 1, 1)
    b = torch.arange(batch, device=device).view(1, -1, 1)
    a = torch.arange(2, device=device).view(1, 1, 2)
    h = ((int(seed) + b) % (1 << 31) * 0x9E3779B1 + t * 2 + a) & 0xFFFFFFFF
    for _ in range(3):  # "lowbias32"-style mixing; products stay below 2^63
        h = (((h >> 16) ^ h) * 0x45D9F3B) & 0xFFFFFFFF
    h = (h >> 16) ^ h
    return h % (jitter + 1)


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


def _autocast(x: torch.Tensor, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)


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
def circular_init(net, x: torch.Tensor, null: torch.Tensor, targets: torch.Tensor, game: str,
                  radii: torch.Tensor, threshold: float, disc_sigma: float,
                  chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep [B,1,H,W], radius [B])``: the initial keep map at input resolution and the radius
    chosen (-1 where none qualified and the whole image starts perturbed).

    Deletion perturbs a centred disc and keeps the rest; preservation keeps the disc. All radii
    of all images are scored in batched forwards.
    """
    h, w = x.shape[-2:]
    centre = torch.tensor([[w // 2, h // 2]], device=x.device, dtype=torch.float32).expand(len(radii), 2)
    discs = soft_discs(centre, radii, (h, w), disc_sigma)  # [R,H,W], 1 inside
    perturb = discs if game == DELETION else 1 - discs
    f_r = perturbation_scores(net, x, null, perturb, targets, target_probability, chunk)  # [B,R]
    with torch.no_grad():
        both = net(torch.cat([x, null]))
        f_x, f_null = target_probability(both, targets.repeat(2, 1)).float().chunk(2)
    denom = (f_x - f_null)[:, None]
    norm = (f_r - f_null[:, None]) / denom.where(denom > 0, torch.ones_like(denom))
    ok = (norm <= threshold) if game == DELETION else (norm >= 1 - threshold)
    ok &= denom > 0
    first = ok.float().argmax(dim=1)  # the first True (the smallest radius); 0 if none
    found = ok.any(dim=1)
    keep = (1 - perturb[first]) * found[:, None, None]  # fallback: all perturbed (keep = 0)
    radius = torch.where(found, radii[first], torch.full_like(radii[first], -1.0))
    return keep[:, None], radius


# --------------------------------------------------------------------------------------------
# The optimisation
# --------------------------------------------------------------------------------------------
def learn_mask(model, x: torch.Tensor, targets: torch.Tensor, *, game: str = DELETION, top_k: int = 0,
               iterations: int = 300, lr: float = 0.1, l1: float | None = None, l2: float | None = None,
               beta: float = 3.0, delta: int = 8, mask_size: int | None = None, mask_sigma: float = 5.0,
               blur_sigma: float = 10.0, jitter: int = 4, init: str = "circle", radius_step: float = 5.0,
               radius_max: float = 175.0, init_threshold: float = 0.01, layer: str | None = None,
               seed: int = 0, amp: bool = False, chunk: int = 128) -> tuple[torch.Tensor, dict]:
    """Learn a batch of perturbation masks; returns ``(heatmaps [B,h,w], info)``.

    ``top_k > 0`` replaces the targets by the ``top_k`` classes the model predicts for ``x``
    (the localisation setting). ``init``: ``"circle"`` (the radius search) or ``"ones"``
    (nothing perturbed). ``amp``: bf16 autocast for the network's forward/backward.
    """
    if game not in (DELETION, PRESERVATION):
        raise ValueError(f"game must be '{DELETION}' or '{PRESERVATION}', not {game!r}")
    if init not in ("circle", "ones"):
        raise ValueError(f"init must be 'circle' or 'ones', not {init!r}")
    net = model.net
    x = x.detach()
    with torch.no_grad(), _autocast(x, amp):
        logits0 = net(x).float()
    if top_k > 0:
        targets = logits0.topk(top_k, dim=1).indices
    targets = targets.to(x.device)
    score_before = target_probability(logits0, targets)
    defaults = (_layer_defaults(model, layer) if layer else None) or (1e-4, 1e-2)
    l1 = defaults[0] if l1 is None else float(l1)
    l2 = defaults[1] if l2 is None else float(l2)
    if layer:
        return _learn_layer_mask(model, x, targets, game, iterations, lr, l1, l2, beta, layer, amp, score_before)

    b, _, h, w = x.shape
    side = (mask_size, mask_size) if mask_size else (mask_side(h, delta), mask_side(w, delta))
    jit = max(0, int(jitter))
    x_pad = F.pad(x, (0, jit, 0, jit), mode="replicate") if jit else x
    null_pad = gaussian_blur(x_pad, blur_sigma)
    null = null_pad[..., :h, :w]
    diff_pad = x_pad - null_pad  # Phi = null + M * (x - null): one fused multiply-add per step

    if init == "circle":
        radii = torch.arange(0.0, radius_max + 1e-6, radius_step, device=x.device)
        keep, radius = circular_init(net, x, null, targets, game, radii, init_threshold, blur_sigma, chunk)
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
    offsets = jitter_offsets(seed, b, iterations, jit, x.device)
    m = m0.clone().requires_grad_(True)
    opt = torch.optim.Adam([m], lr=lr)
    with torch.enable_grad():
        for t in range(iterations):
            with _autocast(x, amp):
                mm = smooth_mask(m, (h, w), delta, mask_sigma)
                if jit:
                    phi = _crop(null_pad, offsets[t], (h, w)) + mm * _crop(diff_pad, offsets[t], (h, w))
                else:
                    phi = null + mm * (x - null)
                f = target_probability(net(phi).float(), targets)
            loss = _objective(m, f, game, l1, l2, beta)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # a sum: each image's gradient is its own
            opt.step()
            with torch.no_grad():
                m.clamp_(0, 1)
    m = m.detach()
    loss_final, score_after = objective_at(m)
    mm = smooth_mask(m, (h, w), delta, mask_sigma)[:, 0]
    heat = 1 - mm if game == DELETION else mm
    converged = torch.isfinite(loss_final) & torch.isfinite(m.flatten(1)).all(1) & (loss_final < loss_init)
    info = {"loss": loss_final, "loss_init": loss_init, "score_before": score_before,
            "score_after": score_after, "score_blurred": _score(net, null, targets, amp),
            "init_radius": radius, "converged": converged}
    return heat, info


def _score(net, x: torch.Tensor, targets: torch.Tensor, amp: bool) -> torch.Tensor:
    with torch.no_grad(), _autocast(x, amp):
        return target_probability(net(x).float(), targets)


def _learn_layer_mask(model, x, targets, game, iterations, lr, l1, l2, beta, layer, amp, score_before):
    """The mask on an activation (supplementary §"intermediate layers"): ``a * m``, zero fill."""
    net = model.net
    module = model.layer(layer)
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
        opt = torch.optim.Adam([m], lr=lr)
        state["m"] = m
        with torch.enable_grad():
            for _ in range(iterations):
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
@saliency_bench.method("mask")
def mask(model, x: torch.Tensor, targets: torch.Tensor, *, iterations: int = 300, lr: float = 0.1,
         l1: float | None = None, l2: float | None = None, beta: float = 3.0, jitter: int = 4,
         mask_sigma: float = 5.0, blur_sigma: float = 10.0, delta: int = 8, mask_size: int | None = None,
         init: str = "circle", layer: str | None = None, seed: int = 0, amp: bool = False, chunk: int = 128):
    """Meaningful perturbation (Fong & Vedaldi 2017), deletion game: 1 - the learned blur mask.
    l1/l2 default to 1e-4/1e-2 (input) or the per-layer table (layer=pool3 ...)."""
    return learn_mask(model, x, targets, game=DELETION, iterations=iterations, lr=lr, l1=l1, l2=l2, beta=beta,
                      jitter=jitter, mask_sigma=mask_sigma, blur_sigma=blur_sigma, delta=delta,
                      mask_size=mask_size, init=init, layer=layer, seed=seed, amp=amp, chunk=chunk)


@saliency_bench.method("mask_top5")
def mask_top5(model, x: torch.Tensor, targets: torch.Tensor, *, iterations: int = 300, lr: float = 0.1,
              l1: float | None = 1e-3, l2: float | None = None, beta: float = 2.0, jitter: int = 4,
              mask_sigma: float = 5.0, blur_sigma: float = 10.0, delta: int = 8, mask_size: int | None = None,
              init: str = "circle", layer: str | None = None, seed: int = 0, amp: bool = False,
              chunk: int = 128):
    """Meaningful perturbation, localisation setting: delete the top-5 predicted classes'
    summed probability, l1 = 1e-3, beta = 2 (Fong & Vedaldi 2017 §5.2)."""
    return learn_mask(model, x, targets, game=DELETION, top_k=5, iterations=iterations, lr=lr, l1=l1, l2=l2,
                      beta=beta, jitter=jitter, mask_sigma=mask_sigma, blur_sigma=blur_sigma, delta=delta,
                      mask_size=mask_size, init=init, layer=layer, seed=seed, amp=amp, chunk=chunk)


@saliency_bench.method("mask_preserve")
def mask_preserve(model, x: torch.Tensor, targets: torch.Tensor, *, iterations: int = 300, lr: float = 0.1,
                  l1: float | None = None, l2: float | None = None, beta: float = 3.0, jitter: int = 4,
                  mask_sigma: float = 5.0, blur_sigma: float = 10.0, delta: int = 8,
                  mask_size: int | None = None, init: str = "circle", layer: str | None = None, seed: int = 0,
                  amp: bool = False, chunk: int = 128):
    """Meaningful perturbation, preservation game: the smallest blur mask that keeps the target's
    probability (Fong & Vedaldi 2017 eq. 3 with the sign of the score flipped)."""
    return learn_mask(model, x, targets, game=PRESERVATION, iterations=iterations, lr=lr, l1=l1, l2=l2,
                      beta=beta, jitter=jitter, mask_sigma=mask_sigma, blur_sigma=blur_sigma, delta=delta,
                      mask_size=mask_size, init=init, layer=layer, seed=seed, amp=amp, chunk=chunk)

"""Extremal perturbation (Fong, Patrick & Vedaldi, "Understanding Deep Networks via Extremal
Perturbations and Smooth Masks", ICCV 2019, eq. 5-7): for each area ``a``, the smooth mask
``m_a`` of about that area that keeps the target score highest,

    m_a = argmax_m  s_target(m (x) x) - lambda * || sort(vec m) - r_a ||^2

where ``m (x) x`` blends each pixel between the image and its blurred copies (a pyramid of 8
levels, Gaussian sigma 20 down to 0), ``m = pool(P)`` is built from a coarse parameter grid
``P`` (step 7 px) by a smooth max-pooling of Gaussian bumps (sigma 21), and ``r_a`` is the
sorted vector of a mask of area ``a`` (the area constraint, eq. 7). The heatmap is the sum of
the masks of all areas (TorchRay's pointing game).

Program followed: TorchRay's ``extremal_perturbation`` (``MaskGenerator``, ``Perturbation``,
``simple_reward``, the preservation game; SGD lr 0.01, momentum 0.9 with dampening 0.9; the
area weight 300 growing by 1.0035 per step; horizontal flip of every other step's input; the
mask returned is the one of the last step), with the setting of TorchRay's pointing-game table
(``examples/attribution_benchmark.py``): 800 iterations, areas 0.025, 0.05, 0.1, 0.2 (VOC;
``areas="coco"``: 0.018, 0.025, 0.05, 0.1), ``smooth=0.09`` (a Gaussian of 0.09 x the map's
shorter side, zero padding, TorchRay's ``imsmooth``), the masks summed. TorchRay smooths after
resizing to the original image; here the map stays at the input size (the benchmark resizes
it), so the smoothing is at input resolution. There is no randomness to reproduce: a batch of
images is optimised at once (one parameter tensor, one SGD, per-element updates, so each image
follows TorchRay's trajectory), and the result equals TorchRay's per-image function to float
round-off (tests). The masks are TorchRay's bit for bit (its area constraint sorts them, so a
mask one ulp off breaks ties the other way and the optimum drifts: 8% after 30 steps, measured);
the mask pooling's gradient is written out (:class:`_SoftmaxPool`): forward + backward 1.5-2x
cheaper than autograd's on a CPU. ``chunk`` bounds the masked copies per forward pass (gradients
accumulate; 0: 64 on a GPU, one image's masks on a CPU, where larger batches of these
memory-bound masks ran slower). The copies go to the network channels-last.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

import saliency_bench
from saliency_bench.targets import Targets, as_target_tensor, target_score

AREAS = {"voc": (0.025, 0.05, 0.1, 0.2), "coco": (0.018, 0.025, 0.05, 0.1)}


def imsmooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """TorchRay's ``imsmooth`` (zero padding): separable Gaussian, half-width ``ceil(4 sigma)``."""
    width = math.ceil(4 * sigma)
    t = torch.arange(-width, width + 1, dtype=torch.float32, device=x.device) / (
        math.sqrt(2) * sigma + torch.finfo(torch.float32).eps)
    k = torch.exp(-t * t)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, -1, -1, -1), padding=(width, 0), groups=c)
    return F.conv2d(x, k.view(1, 1, 1, -1).expand(c, -1, -1, -1), padding=(0, width), groups=c)


class MaskGenerator:
    """TorchRay's ``MaskGenerator`` (softmax pooling, coldness 20, clamped), batched over masks."""

    def __init__(self, shape: tuple[int, int], step: int, sigma: float, device) -> None:
        self.shape, self.step, self.sigma = shape, step, sigma
        self.margin = sigma
        self.padding = 1 + math.ceil((self.margin + sigma) / step)
        self.radius = 1 + math.ceil(sigma / step)
        self.shape_in = [math.ceil(z / step) for z in shape]
        self.shape_mid = [z + 2 * self.padding - (2 * self.radius + 1) + 1 for z in self.shape_in]
        self.shape_up = [step * z for z in self.shape_mid]
        self.shape_out = [z - step + 1 for z in self.shape_up]
        self.weight = _bump_weights(tuple(self.shape_mid), tuple(self.shape_up), tuple(self.shape_out),
                                    self.radius, self.padding, float(self.margin), step, float(sigma)).to(device)

    def generate(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cropped ``[K,1,H,W]``, full ``[K,1,*shape_out]``) masks of the parameters ``p [K,1,h,w]``.

        TorchRay's program, value for value: unfold the ``(2r+1)^2`` neighbours of every cell,
        upsample them nearest to whole cells, weight them by the bumps, softmax-pool them with
        coldness 20 (the same PyTorch kernels on the same memory layout, so the masks are
        bit-identical to TorchRay's: its area constraint sorts them, and a tie broken the other
        way by float round-off would change the optimum), clamp. The upsampling is a gather (not
        ``interpolate``) and the gradient is :class:`_SoftmaxPool`'s closed form, not autograd's
        chain through the softmax, the products and the crop."""
        k = 2 * self.radius + 1
        u = F.unfold(p, (k, k), padding=(self.padding,) * 2).view(len(p), k * k, *self.shape_mid)
        m = _SoftmaxPool.apply(u, self.weight, self.step, 20).clamp(0, 1)
        r = round(self.margin)
        return m[:, :, r:r + self.shape[0], r:r + self.shape[1]], m


class _SoftmaxPool(torch.autograd.Function):
    """``out = sum_c m_c softmax(beta m)_c`` with ``m[k,c,y,x] = w[c,y,x] u[k,c,y // step, x // step]``:
    forward with TorchRay's very operations (``w * m``, ``softmax(beta * m, dim=1)``,
    ``(m * s).sum(1)``) on its layout, the nearest upsampling read as a broadcast view;
    gradient ``d out / d m_c = s_c (1 + beta (m_c - out))``, times ``w``, summed over each
    cell's ``step x step`` pixels."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, w: torch.Tensor, step: int, beta: int) -> torch.Tensor:
        n, c, hm, wm = u.shape
        h, wd = w.shape[-2:]
        up = u[:, :, :, None, :, None].expand(n, c, hm, step, wm, step).reshape(n, c, hm * step, wm * step)
        m = w * up[:, :, :h, :wd]
        s = F.softmax(beta * m, dim=1)
        out = (m * s).sum(dim=1, keepdim=True)
        ctx.save_for_backward(w, m, s, out)
        ctx.beta, ctx.step = beta, step
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        w, m, s, out = ctx.saved_tensors
        step = ctx.step
        # g s_c (1 + beta (m_c - out)) w_c = (g (1 - beta out) + beta g m_c) s_c w_c
        t = torch.addcmul(g * (1 - ctx.beta * out), m, g * ctx.beta).mul_(s).mul_(w)
        # summed over each cell's pixels (the last row and column of cells are cut by the crop)
        du = F.avg_pool2d(t, step, step, ceil_mode=True, divisor_override=1)
        return du, None, None, None


@lru_cache(maxsize=4)
def _bump_weights(shape_mid, shape_up, shape_out, radius, padding, margin, step, sigma) -> torch.Tensor:
    inv = [torch.tensor(a, dtype=torch.float32) / torch.tensor(b, dtype=torch.float32)
           for a, b in zip(shape_mid, shape_up)]
    uy, ux = torch.meshgrid(torch.arange(shape_out[0], dtype=torch.float32),
                            torch.arange(shape_out[1], dtype=torch.float32), indexing="ij")
    w = torch.zeros(1, (2 * radius + 1) ** 2, *shape_out)
    for ky in range(2 * radius + 1):
        for kx in range(2 * radius + 1):
            iy = torch.floor(inv[0] * uy) + ky - padding
            ix = torch.floor(inv[1] * ux) + kx - padding
            d = torch.sqrt((uy - (margin + step * iy)) ** 2 + (ux - (margin + step * ix)) ** 2)
            w[0, ky * (2 * radius + 1) + kx] = torch.exp(-2 * ((d / sigma - .5).clamp(min=0) ** 2))
    return w


def pyramid(x: torch.Tensor, levels: int = 8, max_blur: float = 20.0) -> torch.Tensor:
    """``[B,L,C,H,W]``: level ``l`` is ``x`` blurred with sigma ``(1 - l/(L-1)) max_blur`` (TorchRay's ``Perturbation``)."""
    return torch.stack([imsmooth(x, float((1 - s) * max_blur)) for s in torch.linspace(0, 1, levels)], dim=1)


def perturb(pyr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B,A,C,H,W]``: each of the ``A`` masks ``[B,A,H,W]`` indexes its image's pyramid, linearly between levels."""
    b, a = mask.shape[:2]
    levels, c = pyr.shape[1], pyr.shape[2]
    w = mask[:, :, None, None] * (levels - 1)  # [B,A,1,1,H,W]
    k = w.floor()
    w = w - k
    k = k.long().expand(b, a, 1, c, *mask.shape[2:])
    y = pyr[:, None].expand(b, a, *pyr.shape[1:])
    y0 = torch.gather(y, 2, k)
    y1 = torch.gather(y, 2, (k + 1).clamp(max=levels - 1))
    return ((1 - w) * y0 + w * y1)[:, :, 0]


def optimise(net, x: torch.Tensor, targets, areas, *, iterations: int = 800, levels: int = 8,
             step: int = 7, sigma: float = 21.0, jitter: bool = True, chunk: int = 64) -> torch.Tensor:
    """``[B,A,H,W]`` the masks of TorchRay's ``extremal_perturbation`` (preservation game,
    ``simple_reward``) for every image of ``x`` and every area, optimised together."""
    b, a = x.shape[0], len(areas)
    with torch.no_grad():
        pyr = pyramid(x, levels)
    gen = MaskGenerator(tuple(x.shape[-2:]), step, sigma, x.device)
    pmask = torch.ones(b * a, 1, *gen.shape_in, device=x.device, requires_grad=True)
    n_out = gen.shape_out[0] * gen.shape_out[1]
    ref = torch.ones(a, n_out, device=x.device)
    for i, area in enumerate(areas):
        ref[i, :int(n_out * (1 - area))] = 0
    ref = ref.repeat(b, 1)
    rows_t = as_target_tensor(targets, x.device).repeat_interleave(a, dim=0)  # row b * A + i
    opt = torch.optim.SGD([pmask], lr=0.01, momentum=0.9, dampening=0.9)
    weight = 300.0
    per = max(1, chunk // a)  # images per pass
    for t in range(iterations):
        opt.zero_grad()
        last = []
        for b0 in range(0, b, per):
            b1 = min(b, b0 + per)
            r0, r1 = b0 * a, b1 * a
            cropped, full = gen.generate(pmask[r0:r1])
            inp = perturb(pyr[b0:b1], cropped.view(b1 - b0, a, *cropped.shape[2:])).flatten(0, 1)
            if jitter and t % 2 == 0:
                inp = torch.flip(inp, dims=(3,))
            inp = inp.contiguous(memory_format=torch.channels_last)  # oneDNN's and cuDNN's fast layout
            reward = target_score(_logits(net, inp), rows_t[r0:r1])
            regul = -((full.flatten(1).sort(dim=1)[0] - ref[r0:r1]) ** 2).mean(dim=1) * weight
            (-(reward + regul).sum()).backward()
            last.append(cropped.detach())
        opt.step()
        with torch.no_grad():
            pmask.clamp_(0, 1)
        weight *= 1.0035
    return torch.cat(last)[:, 0].view(b, a, *x.shape[-2:])


def _logits(net, inp: torch.Tensor) -> torch.Tensor:
    out = net(inp)
    return out.flatten(1) if out.ndim > 2 else out


def area_list(areas) -> tuple[float, ...]:
    """The areas: a name of TorchRay's settings (``"voc"``, ``"coco"``) or numbers."""
    if isinstance(areas, str):
        if areas not in AREAS:
            raise ValueError(f"areas must be {' or '.join(map(repr, AREAS))} or a list of fractions, not {areas!r}")
        return AREAS[areas]
    return tuple(float(v) for v in (areas if isinstance(areas, (list, tuple)) else [areas]))


@saliency_bench.method("extremal_perturbation",
                       cost=lambda iterations=800, areas="voc", **_: iterations * len(area_list(areas)))
def extremal_perturbation(model, x: torch.Tensor, targets: Targets, *, areas="voc", iterations: int = 800,
                          levels: int = 8, step: int = 7, sigma: float = 21.0, smooth: float = 0.09,
                          jitter: bool = True, chunk: int = 0) -> torch.Tensor:
    """Extremal perturbation (Fong et al. 2019), preservation game: the sum of the optimal
    smooth masks of areas 2.5, 5, 10 and 20% (``areas="coco"``: 1.8, 2.5, 5, 10%), 800 steps,
    smoothed by 0.09 x the shorter side (TorchRay's pointing-game setting)."""
    areas = area_list(areas)
    if chunk <= 0:  # on a CPU these memory-bound masks run fastest one image's worth at a time
        chunk = 64 if x.device.type == "cuda" else len(areas)
    with torch.enable_grad():
        masks = optimise(model.net, x.detach(), targets, areas, iterations=int(iterations), levels=int(levels),
                         step=int(step), sigma=float(sigma), jitter=bool(jitter), chunk=int(chunk))
    if smooth > 0:
        masks = imsmooth(masks, float(smooth) * min(masks.shape[-2:]))
    return masks.sum(dim=1)

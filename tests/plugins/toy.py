"""A plugin file for the harness tests: a tiny synthetic dataset with boxes and masks, a tiny
model, and methods that misbehave on purpose. Loaded with ``--plugin`` / load_plugin_file."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

import saliency_bench
from saliency_bench.contracts import ClassInfo, Dataset, Model, Sample


class ToyDataset(Dataset):
    """``n`` 64x48 images, each with a bright square whose box is the ground truth; every third
    sample's image is 'corrupt' (load error); category alternates between two classes."""

    name = "toy"

    def __init__(self, n: int = 10, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    @property
    def ids(self) -> list[str]:
        return [f"toy{i:03d}" for i in range(self.n)]

    def load(self, i: int) -> Sample:
        rng = np.random.default_rng(i)
        img = (rng.random((48, 64, 3)) * 60).astype(np.uint8)
        x0, y0 = 8 + (i * 7) % 30, 6 + (i * 5) % 20
        img[y0:y0 + 16, x0:x0 + 16] = 250
        if i == 4:  # a bright top-left corner: the misbehaving methods below react to it
            img[:4, :4] = 255
        mask = np.zeros((48, 64), bool)
        mask[y0:y0 + 16, x0:x0 + 16] = True
        s = Sample(id=self.ids[i], image=Image.fromarray(img), size=(48, 64),
                   targets={"imagenet": (i % 2,)}, category=f"class{i % 2}",
                   boxes=np.array([[x0, y0, x0 + 15, y0 + 15]], np.float32), mask=mask,
                   flags={"difficult": i % 4 == 0}, split="heldout" if i % 2 else "eval")
        if i % 3 == 2:
            s.image, s.error = None, f"cannot decode image toy{i:03d}.jpg: truncated file"
        return s


@saliency_bench.dataset("toy")
def toy(*, n: int = 10, seed: int = 0) -> ToyDataset:
    """A synthetic dataset for tests."""
    return ToyDataset(n, seed)


@saliency_bench.model("toy_net")
def toy_net(weights: str | None = None, device: str = "cpu") -> Model:
    """A tiny conv net with two classes."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 2))
    return Model(name="toy_net", net=net.to(device), input_size=(32, 32), mean=(0.5, 0.5, 0.5),
                 std=(0.25, 0.25, 0.25), classes=[ClassInfo(0, "c0", "zero"), ClassInfo(1, "c1", "one")],
                 roles={"gradcam": "1"}, digest="toy")


@saliency_bench.method("brightness")
def brightness(model, x, targets, *, power: float = 1.0):
    """Saliency = pixel brightness (a deterministic, model-free map)."""
    return x.mean(1).sub(x.mean(1).amin(dim=(1, 2), keepdim=True)).pow(power)


def _bright_corner(x: torch.Tensor) -> torch.Tensor:
    return x[:, :, 0, 0].mean(1) > 1.5  # normalised: (255/255 - 0.5) / 0.25 = 2


@saliency_bench.method("nan_on_corner")
def nan_on_corner(model, x, targets):
    """Brightness, but NaN for a sample whose top-left corner is bright."""
    out = brightness(model, x, targets)
    out[_bright_corner(x)] = float("nan")
    return out


@saliency_bench.method("raise_on_corner")
def raise_on_corner(model, x, targets):
    """Brightness, but raises for a batch that holds a sample with a bright top-left corner."""
    if bool(_bright_corner(x).any()):
        raise RuntimeError("bright corner")
    return brightness(model, x, targets)


@saliency_bench.method("wrong_shape")
def wrong_shape(model, x, targets):
    """Returns a map without the batch dimension."""
    return x.mean(1)[0]


@saliency_bench.method("sleepy")
def sleepy(model, x, targets, *, seconds: float = 0.4):
    """The gradient method, slowly: gives a test time to interrupt a run."""
    import time

    time.sleep(seconds)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(model.net(x).gather(1, targets.indices[:, :1]).sum(), x)
    return g.abs().amax(1)


@saliency_bench.method("with_diagnostics")
def with_diagnostics(model, x, targets):
    """Brightness, with per-sample diagnostics as the mask methods give them."""
    bright = _bright_corner(x)
    return brightness(model, x, targets), {"converged": (~bright).tolist(), "loss": x.mean(dim=(1, 2, 3))}


@saliency_bench.method("corner_point", kind="point")
def corner_point(model, x, targets):
    """A point method that always answers the top-left corner."""
    return x.new_zeros(x.shape[0], 2)


@saliency_bench.benchmark("fragile")
class Fragile(saliency_bench.Benchmark):
    """Scores the map's maximum, but cannot handle the ground truth of sample toy006."""

    columns = ("fragile",)

    def score(self, sample, output, input_size):
        if sample.id == "toy006":
            raise ValueError("unreadable ground truth")
        return {"peak": float(output.max())}

    def summarize(self, records, samples):
        return {"fragile": {"value": float(len(records)), "ci": None, "n": len(records), "unit": "", "note": ""}}


@saliency_bench.method("coarse")
def coarse(model, x, targets):
    """Brightness averaged on a 4x4 grid: a map at its own coarse resolution, as Grad-CAM's 7x7."""
    return torch.nn.functional.adaptive_avg_pool2d(brightness(model, x, targets)[:, None], 4)[:, 0]


def top_left_of_original(image, size, *, crop: int = 32):
    """A view only the original image can give: its top-left ``crop`` x ``crop`` pixels, unresized."""
    return torch.from_numpy(np.asarray(image)[:crop, :crop].copy()).permute(2, 0, 1)


@saliency_bench.method("from_view", views={"corner": top_left_of_original})
def from_view(model, x, targets, *, crop: int = 32, corner=None):
    """Brightness of the view (the original's corner); of ``x`` when called without the view."""
    return (x if corner is None else corner).mean(1)


@saliency_bench.method("near_tie")
def near_tie(model, x, targets):
    """Two maxima 1 part in 10^5 apart, which float16 would tie: near the top-left and bottom-right."""
    out = x.new_zeros(x.shape[0], *x.shape[-2:])
    out[:, 2, 2] = 1.0
    out[:, -3, -3] = 1.0 - 1e-5
    return out


@saliency_bench.benchmark("shape_probe")
class ShapeProbe(saliency_bench.Benchmark):
    """Records the shape and sum of the map it is given (times ``scale``)."""

    columns = ("probe",)
    defaults = {"scale": 1.0}

    def score(self, sample, output, input_size):
        scale = float(self.options.get("scale", 1.0))
        return {"h": int(output.shape[0]), "w": int(output.shape[1]), "sum": scale * float(output.sum())}

    def summarize(self, records, samples):
        return {"probe": {"value": float(np.mean([r["sum"] for r in records])), "ci": None, "n": len(records),
                          "unit": "", "note": ""}}

    def protocol(self):
        return {"probe": "the map as the method returned it, summed"}


@saliency_bench.method("always_raises")
def always_raises(model, x, targets):
    """Fails on every sample."""
    raise RuntimeError("broken on purpose")

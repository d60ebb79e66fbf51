"""The Model contract: a classifier with what methods and benchmarks need to know about it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class ClassInfo:
    index: int
    wnid: str
    name: str


@dataclass
class Model:
    """A classifier with what methods and benchmarks need to know about it.

    ``roles`` names the module that fills each method role (``"gradcam"``, ``"excitation"``,
    ``"contrast"``, ``"classifier"``); ``aliases`` gives short names to other layers
    (``"pool3"``) for the intermediate-layer mask. ``net`` maps normalised input to
    **pre-softmax logits**.
    """

    name: str
    net: nn.Module
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: Sequence[ClassInfo]
    label_space: str = "imagenet"
    roles: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    weights: str = ""  # where the weights came from
    digest: str = ""  # short content hash of the weights, part of every cache key

    def __post_init__(self) -> None:
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        # In-place activations break backward hooks (and modified backward rules).
        for m in self.net.modules():
            if hasattr(m, "inplace"):
                m.inplace = False

    @property
    def device(self) -> torch.device:
        p = next(self.net.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> "Model":
        # channels-last: oneDNN and cuDNN run these convnets 2-3x faster in that layout
        # (EfficientNet-Lite0 forward on 2 CPU cores: 4.6 -> 11.7 images/s).
        self.net.to(device=device, memory_format=torch.channels_last)
        return self

    def layer_name(self, role_or_name: str) -> str:
        """Resolve a role (``gradcam``), an alias (``pool3``) or a module path (``features.16``)."""
        name = self.roles.get(role_or_name) or self.aliases.get(role_or_name) or role_or_name
        modules = dict(self.net.named_modules())
        if name not in modules:
            known = sorted(set(self.roles) | set(self.aliases))
            raise KeyError(
                f"model '{self.name}' has no layer '{role_or_name}'; roles and aliases: "
                f"{', '.join(known)}; or give a module path such as "
                f"'{next(iter(n for n in modules if n), '')}'"
            )
        return name

    def layer(self, role_or_name: str) -> nn.Module:
        return dict(self.net.named_modules())[self.layer_name(role_or_name)]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B,3,H,W]`` (already at ``input_size``) -> normalised float on the model's device.

        The dataset's mean pixel is 0 after this, so "fill with the mean pixel" is "fill with 0".
        """
        src = images.to(self.device, non_blocking=True)
        if src.device.type == "cpu" and src.dtype == torch.uint8:
            # On the CPU a table per channel, made by the operations below: the same floats
            # (saliency_bench.ops.normalize).
            from saliency_bench.ops import normalize

            tab = normalize.table((type(self), tuple(self.mean), tuple(self.std)), self._normalise)
            x = normalize.lookup(src, tab) if tab is not None else None
            if x is not None:
                return x
        return self._normalise(src)

    def _normalise(self, src: torch.Tensor) -> torch.Tensor:
        # One float tensor, channels-last from the start, and every step in place: the values of
        # ``((x.float() / 255 - mean) / std)`` bit for bit, at half the cost (no temporaries, no
        # layout copy at the end; 1.3 -> 0.6 ms an image on one CPU core at 224x224).
        x = torch.empty(src.shape, dtype=torch.float32, device=src.device, memory_format=torch.channels_last)
        x.copy_(src).div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def class_index(self, spec: str | int) -> int:
        """A class given as an index, a WordNet id, or (a unique part of) its name."""
        if isinstance(spec, int) or str(spec).isdigit():
            i = int(spec)
            if not 0 <= i < len(self.classes):
                raise ValueError(f"class index {i} is outside 0..{len(self.classes) - 1}")
            return i
        s = str(spec).strip().lower()
        exact = [c.index for c in self.classes if s in (c.wnid.lower(), c.name.lower())]
        if exact:
            return exact[0]
        part = [c.index for c in self.classes if s in c.name.lower()]
        if len(part) == 1:
            return part[0]
        if not part:
            raise ValueError(f"no class of model '{self.name}' matches '{spec}'")
        names = ", ".join(f"{i}:{self.classes[i].name}" for i in part[:8])
        raise ValueError(f"'{spec}' matches several classes ({names}...): give the index")


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A short, stable content hash of a state dict (cache keys depend on the weights)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k]
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().flatten()[:4096].cpu().numpy().tobytes())
    return h.hexdigest()[:12]


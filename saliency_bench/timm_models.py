"""Any timm model: ``--model timm:ARCH`` (``timm:resnet18``, ``timm:efficientnet_b0.ra_in1k``).

The registry resolves ``FAMILY:ARCH`` by calling the factory registered as ``FAMILY`` with the
architecture (:func:`saliency_bench.registry.get_model`); this module registers ``timm``.

**Weights** never come from the network at run time. ``--weights PATH`` reads a timm state dict
(``.pth``/``.bin`` through ``torch.load(weights_only=True)``, or ``.safetensors``; a checkpoint
dict holding it under ``"state_dict"`` or ``"model"`` works too; a checkpoint in the original
authors' layout goes through the architecture's own ``checkpoint_filter_fn`` as timm does).
Without ``--weights`` it reads the file timm itself would have downloaded, from its cache:
the Hugging Face hub cache of the model's ``pretrained_cfg["hf_hub_id"]`` (``model.safetensors``
or ``pytorch_model.bin``, looked up with ``huggingface_hub.try_to_load_from_cache``, which never
connects), or the torch hub ``checkpoints/`` folder for a ``pretrained_cfg["url"]``. A missing
file raises :class:`~saliency_bench.models.WeightsNotFound` naming the file and where to put
it. ``weights="random"`` builds the architecture with random weights (timing and tests).

**Preprocessing** (input size, mean, std) is timm's pretrained config
(``timm.data.resolve_data_config``). A 1000-way head scores ImageNet's classes
(:func:`~saliency_bench.models.imagenet_classes`), an 80-way head COCO's.

**Roles** are found from the architecture by running it once:

* ``gradcam``: the module whose output *is* ``forward_features``'s output (the last feature
  map before global pooling: ResNet ``layer4``, EfficientNet ``bn2`` after ``conv_head``,
  MobileNetV3 ``blocks``, ConvNeXt ``stages``), the outermost such module;
* ``excitation``: the last ``feature_info`` stage at stride 8 (28x28 at 224), as GoogLeNet's
  ``pool2`` and EfficientNet-Lite0's ``blocks.2``;
* ``contrast``: the global pooling module (``global_pool``), else the classifier's input;
* ``classifier``: ``pretrained_cfg["classifier"]``.

Aliases ``stage0`` ... name the ``feature_info`` stages. ``-p layer=...`` picks any other
module by role, alias or path. Vision transformers' features are token sequences
``[B,N,C]``: their ``gradcam`` role is the last block's ``norm1`` (as pytorch-grad-cam's ViT
tutorial), which the ``gradcam.*`` methods bring to ``[B,C,h,w]``; methods that need a
``[B,C,h,w]`` layer themselves (our ``grad_cam``) say so when they fail.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .contracts import ClassInfo, Model, weights_digest
from .models import COCO_CATEGORIES, WeightsNotFound, imagenet_classes
from .registry import model

FILES = ("model.safetensors", "pytorch_model.bin")


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict):
        for key in ("state_dict", "model"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def cached_weights(arch: str, cfg: dict) -> Path:
    """The file timm would have downloaded for ``arch``, from its local caches only."""
    hub_id = cfg.get("hf_hub_id") or ""
    repo, _, revision = hub_id.partition("@")
    looked: list[str] = []
    if repo:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        for f in FILES:
            hit = try_to_load_from_cache(repo, f, revision=revision or None)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
        folder = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        looked.append(f"'{FILES[0]}' (or '{FILES[1]}') of the Hugging Face repo {repo} in the hub cache "
                      f"{folder}/snapshots/<revision>/ (on a machine with network: "
                      f"huggingface-cli download {repo} {FILES[0]}, then copy {folder})")
    url = cfg.get("url") or ""
    if url:
        name = url.rsplit("/", 1)[-1]
        ckpt = Path(torch.hub.get_dir()) / "checkpoints" / name
        if ckpt.is_file():
            return ckpt
        looked.append(f"'{name}' ({url}) in {ckpt.parent}/")
    if not looked:
        raise WeightsNotFound(f"timm model '{arch}' has no pretrained weights in timm's config; "
                              "pass --weights PATH (a timm state dict)")
    raise WeightsNotFound(
        f"timm model '{arch}' needs its weights: put " + "; or ".join(looked)
        + "; or pass --weights PATH (a timm state dict). saliency-bench never downloads at run time.")


def _outermost_module_of(net: nn.Module, x: torch.Tensor, target_fn) -> tuple[str, list[tuple[str, tuple]]]:
    """Run ``target_fn(x)`` with hooks; the last module (in completion order, so the outermost)
    whose output is the returned tensor, and every module's output shape in order."""
    done: list[tuple[str, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: done.append((n, o)))
               for n, m in net.named_modules() if n and not isinstance(m, nn.Identity)]
    try:
        with torch.no_grad():
            out = target_fn(x)
    finally:
        for h in handles:
            h.remove()
    hits = [n for n, o in done if isinstance(o, torch.Tensor) and o.shape == out.shape
            and (o is out or torch.equal(o, out))]
    return (hits[-1] if hits else ""), [(n, tuple(o.shape)) for n, o in done if isinstance(o, torch.Tensor)]


def _output_ndim(net: nn.Module, module: nn.Module | None, x: torch.Tensor) -> int:
    if module is None:
        return 0
    seen: list[int] = []
    h = module.register_forward_hook(lambda m, i, o: seen.append(o.ndim if isinstance(o, torch.Tensor) else 0))
    try:
        with torch.no_grad():
            net(x)
    finally:
        h.remove()
    return seen[0] if seen else 0


def infer_roles(net: nn.Module, input_size: tuple[int, int]) -> tuple[dict[str, str], dict[str, str]]:
    """Roles and aliases of a timm network (see the module docstring)."""
    modules = dict(net.named_modules())
    x = torch.zeros(1, 3, *input_size, device=next(net.parameters()).device)
    gradcam, _ = _outermost_module_of(net, x, net.forward_features)
    stages = [f for f in getattr(net, "feature_info", []) if f.get("module") in modules]
    aliases = {f"stage{i}": f["module"] for i, f in enumerate(stages)}
    stride8 = [f["module"] for f in stages if f.get("reduction") == 8]
    classifier = net.pretrained_cfg.get("classifier") or ""
    if classifier not in modules:
        classifier = next((n for n, m in reversed(list(modules.items())) if isinstance(m, nn.Linear)), "")
    out_ndim = _output_ndim(net, modules.get(gradcam), x) if gradcam else 4
    if out_ndim == 3 and isinstance(getattr(net, "blocks", None), nn.Sequential) and len(net.blocks):
        # Tokens: past the last block only the class token reaches the head, so the patch tokens'
        # gradient is 0 there; pytorch-grad-cam's ViT tutorial reads the last block's norm1.
        last = f"blocks.{len(net.blocks) - 1}"
        gradcam = f"{last}.norm1" if f"{last}.norm1" in modules else last
    pools = [n for n in modules if n.rsplit(".", 1)[-1] == "global_pool"]
    roles = {"gradcam": gradcam or (stages[-1]["module"] if stages else ""),
             "excitation": stride8[-1] if stride8 else "",
             "contrast": pools[0] if pools else classifier,
             "classifier": classifier}
    return {k: v for k, v in roles.items() if v}, aliases


@model("timm")
def timm_model(arch: str, weights: str | None = None, device: str = "cpu") -> Model:
    """Any timm architecture (``timm:ARCH``); weights from --weights or timm's local cache."""
    import timm
    from timm.data import resolve_data_config

    if not arch:
        raise ValueError("give a timm architecture: --model timm:ARCH (e.g. timm:resnet18)")
    try:
        net = timm.create_model(arch, pretrained=False)
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise ValueError(f"timm has no model '{arch}' ({e}); see timm.list_models()") from e
    cfg = dict(net.pretrained_cfg)
    if weights == "random":
        torch.manual_seed(0)
        net = timm.create_model(arch, pretrained=False)
        sd, source = {k: v.clone() for k, v in net.state_dict().items()}, "random initialisation"
    else:
        path = Path(weights).expanduser() if weights else cached_weights(arch, cfg)
        if not path.is_file():
            raise WeightsNotFound(f"weights file for model 'timm:{arch}' not found: {path}")
        sd, source = _read(path), str(path)
    classifier = cfg.get("classifier") or ""
    rows = sd.get(f"{classifier}.weight")
    n_out = int(rows.shape[0]) if rows is not None else net.num_classes
    if n_out not in (1000, len(COCO_CATEGORIES)):
        raise ValueError(f"weights {source} give timm:{arch} a {n_out}-way head; saliency-bench scores "
                         f"ImageNet's 1000 or COCO's {len(COCO_CATEGORIES)} classes")
    if n_out != net.num_classes:
        net = timm.create_model(arch, pretrained=False, num_classes=n_out)
    try:
        net.load_state_dict(sd)
    except RuntimeError as first:
        fix = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
        if fix is None:
            raise ValueError(f"weights {source} do not fit timm:{arch}: {first}") from first
        try:
            sd = fix(sd, net)
            net.load_state_dict(sd)
        except Exception as e:
            raise ValueError(f"weights {source} do not fit timm:{arch}: {first}") from e
    data = resolve_data_config({}, model=net)
    input_size = tuple(int(s) for s in data["input_size"][1:])
    roles, aliases = infer_roles(net.eval(), input_size)
    coco = n_out == len(COCO_CATEGORIES)
    classes = (tuple(ClassInfo(i, "", c) for i, c in enumerate(COCO_CATEGORIES)) if coco
               else imagenet_classes())
    m = Model(name=f"timm:{arch}", net=net, input_size=input_size,
              mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
              classes=classes, label_space="coco" if coco else "imagenet", roles=roles, aliases=aliases,
              weights=source, digest=weights_digest(sd))
    return m.to(device)

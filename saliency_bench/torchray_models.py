"""TorchRay's pointing-game models: ``--model torchray:vgg16_voc`` (``vgg16_coco``,
``resnet50_voc``, ``resnet50_coco``).

VGG16 and ResNet50 fine-tuned on PASCAL VOC 2007 and COCO 2014 classification by the
excitation-backprop authors (Zhang et al., ECCV 2016), converted from Caffe by TorchRay, as its
``torchray.benchmark.models.get_model(arch, dataset, convert_to_fully_convolutional=True)``
builds them for its pointing-game table:

* VGG16: torchvision's layout, max pooling with ``ceil_mode`` (Caffe), the classifier as
  convolutions (fc6: 7x7 on pool5, fc7 and fc8: 1x1; ``classifier.0/3/6``); the checkpoint's
  ``classifier.0/2/4`` are renamed to them and reshaped, the first convolution's BGR filters
  made RGB;
* ResNet50: torchvision's, patched to Caffe's (``conv1`` with a bias, the stem's max pool
  without padding and with ``ceil_mode``, the stride of each first bottleneck on its 1x1
  ``conv1``), the classifier a 1x1 convolution; the checkpoint's Caffe BatchNorm/Scale pairs
  (``bn1.0.*``, ``bn1.1.*``) renamed as TorchRay's ``_load_caffe_resnet50`` does.

The network returns ``[B, C]``: the fully convolutional output ``[B, C, 1, 1]`` at 224x224
(for a larger input, the mean over its positions). Preprocessing is TorchRay's Caffe one: RGB in
0..255 minus the mean pixel (123.68, 116.779, 103.939), no scaling. TorchRay resizes the shorter
side to 224; runs here resize the whole image to 224x224 (docs/PROTOCOLS.md §1).

**Weights** are TorchRay's files (``vgg16_voc-b050e8c3.pth.tar`` ...): ``--weights PATH``, or the
torch hub cache where TorchRay's ``load_state_dict_from_url`` saved them
(``$TORCH_HOME/hub/checkpoints/``). Nothing is downloaded; a missing file is named with the
folder it was looked for in; a checkpoint of another architecture (keys or shapes) is an error
naming the file. ``weights="random"`` builds the architecture with random weights (tests, timing).
Labels: VOC's 20 classes (label space ``voc``) or COCO's 80 (``coco``), TorchRay's order.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from .contracts import ClassInfo, Model, weights_digest
from .labels import COCO_CATEGORIES
from .models import WeightsNotFound
from .registry import model

FILES = {"vgg16_voc": "vgg16_voc-b050e8c3.pth.tar", "vgg16_coco": "vgg16_coco-d82c8150.pth.tar",
         "resnet50_voc": "resnet50_voc-9ca920d6.pth.tar", "resnet50_coco": "resnet50_coco-e99468c5.pth.tar"}
URL = "https://dl.fbaipublicfiles.com/torchray/"
CAFFE_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
CAFFE_STD = (1 / 255,) * 3
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


class FullyConvolutional(nn.Module):
    """The converted network's body and its 1x1-output classifier, returning ``[B, C]``."""

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        return y.flatten(2).mean(2)


class VGG16(FullyConvolutional):
    def __init__(self, classes: int) -> None:
        super().__init__()
        from torchvision.models import vgg16

        self.features = vgg16(weights=None).features
        for m in self.features.modules():
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True
        self.classifier = nn.Sequential(nn.Conv2d(512, 4096, 7), nn.ReLU(True), nn.Dropout(),
                                        nn.Conv2d(4096, 4096, 1), nn.ReLU(True), nn.Dropout(),
                                        nn.Conv2d(4096, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._out(self.classifier(self.features(x)))


class ResNet50(FullyConvolutional):
    def __init__(self, classes: int) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
        self.bn1, self.relu = net.bn1, net.relu
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        for layer in (self.layer2, self.layer3, self.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(2048, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self._out(self.fc(self.avgpool(x)))


def convert_vgg16(ckpt: dict) -> dict:
    """TorchRay's ``_load_caffe_vgg16`` renaming: fc6/fc7/fc8 to ``classifier.0/3/6``, BGR -> RGB."""
    remap = {"classifier.2": "classifier.3", "classifier.4": "classifier.6"}
    out = {}
    for k, v in ckpt.items():
        head, _, leaf = k.rpartition(".")
        k = f"{remap.get(head, head)}.{leaf}"
        out[k] = v[:, [2, 1, 0]] if k == "features.0.weight" else v
    return out


def convert_resnet50(ckpt: dict) -> dict:
    """TorchRay's ``_load_caffe_resnet50`` renaming (Caffe's BatchNorm + Scale pairs), BGR -> RGB."""
    out = {}
    for k, v in ckpt.items():
        k = re.sub(r"bn(\d).(0|1).(.*)", r"bn\1.\3", k)
        out[re.sub(r"downsample.(\d).(0|1).(.*)", r"downsample.\1.\3", k)] = v
    if "conv1.weight" in out:
        out["conv1.weight"] = out["conv1.weight"][:, [2, 1, 0]]
    return out


def load_into(net: nn.Module, sd: dict, source: str, name: str) -> None:
    """Load ``sd``, the classifier's matrices reshaped to its convolutions; an error names the file."""
    own = net.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})" for k, v in sd.items()
             if k in own and v.numel() != own[k].numel()]
    sd = {k: (v.reshape(own[k].shape) if k in own and v.numel() == own[k].numel() else v) for k, v in sd.items()}
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if wrong or missing or unexpected:
        raise ValueError(f"checkpoint {source} does not fit model 'torchray:{name}' (TorchRay's {name} file "
                         f"{FILES[name]}): wrong shapes {wrong[:3]}, missing {missing[:5]}, unexpected {unexpected[:5]}")
    sd = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **sd}
    net.load_state_dict(sd)


def find_checkpoint(name: str, weights: str | None) -> Path:
    if weights:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise WeightsNotFound(f"weights file for model 'torchray:{name}' not found: {p}")
        return p
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    p = folder / FILES[name]
    if not p.is_file():
        raise WeightsNotFound(
            f"model 'torchray:{name}' needs TorchRay's checkpoint '{FILES[name]}'. Put that file in {folder}/ "
            f"(the torch hub cache, where TorchRay saves it; it is {URL}{FILES[name]}), or pass --weights PATH. "
            "saliency-bench never downloads at run time.")
    return p


@model("torchray")
def torchray_model(arch: str, weights: str | None = None, device: str = "cpu") -> Model:
    """TorchRay's pointing-game models (``torchray:vgg16_voc``, ``vgg16_coco``, ``resnet50_voc``,
    ``resnet50_coco``), fully convolutional, from TorchRay's checkpoint files."""
    if arch not in FILES:
        raise ValueError(f"TorchRay has no model '{arch}': choose torchray:{', torchray:'.join(FILES)}")
    family, dataset = arch.split("_")
    labels = VOC_CLASSES if dataset == "voc" else tuple(COCO_CATEGORIES)
    net = (VGG16 if family == "vgg16" else ResNet50)(len(labels))
    if weights == "random":
        torch.manual_seed(0)
        net = (VGG16 if family == "vgg16" else ResNet50)(len(labels))
        sd, source = {k: v.clone() for k, v in net.state_dict().items()}, "random initialisation"
    else:
        path = find_checkpoint(arch, weights)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
            ckpt = ckpt["state_dict"]
        if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise ValueError(f"checkpoint {path} holds no state dict (a mapping of names to tensors)")
        sd = (convert_vgg16 if family == "vgg16" else convert_resnet50)(ckpt)
        load_into(net, sd, str(path), arch)
        source = str(path)
    if family == "vgg16":
        roles = {"gradcam": "features.29", "excitation": "features.23", "contrast": "classifier.4",
                 "classifier": "classifier.6"}
        aliases = {"pool4": "features.23", "pool5": "features.30", "relu7": "classifier.4"}
    else:
        roles = {"gradcam": "layer4", "excitation": "layer3", "contrast": "avgpool", "classifier": "fc"}
        aliases = {f"layer{i}": f"layer{i}" for i in range(1, 5)}
    m = Model(name=f"torchray:{arch}", net=net, input_size=(224, 224), mean=CAFFE_MEAN, std=CAFFE_STD,
              classes=tuple(ClassInfo(i, "", c) for i, c in enumerate(labels)), label_space=dataset,
              roles=roles, aliases=aliases, weights=source, digest=weights_digest(net.state_dict()))
    return m.to(device)

"""TorchRay's pointing-game models (``torchray:vgg16_voc`` ...) against TorchRay's own loader.

A randomly initialised network of TorchRay's architecture (torchvision's, with the head of 20
or 80 classes, as ``torchray.benchmark.models.get_model`` makes it) is written in the layout of
TorchRay's Caffe-converted checkpoint files (what its ``_load_caffe_vgg16`` /
``_load_caffe_resnet50`` undo: VGG16's fc layers as ``classifier.0/2/4`` with fc6 in Caffe's
``[4096, 512, 7, 7]`` shape, BGR first filters; ResNet50's BatchNorm as Caffe's BatchNorm +
Scale pairs ``bn1.0.running_mean`` / ``bn1.1.weight``, a bias on ``conv1``). TorchRay loads it
with its functions and converts it to fully convolutional; we load the same file. The outputs on
the same inputs are equal.
"""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from saliency_bench.models import WeightsNotFound
from saliency_bench.registry import get_model

trm = pytest.importorskip("torchray.benchmark.models")


def _randomise(net: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))


def torchray_vgg16(classes: int):
    """TorchRay's VGG16 for its pointing game, random, and its checkpoint in Caffe's layout."""
    from torchvision.models import vgg16

    net = vgg16(weights=None)
    net = trm.replace_module(net, "classifier.6", nn.Linear(4096, classes))
    _randomise(net)
    ckpt = {}
    for k, v in net.state_dict().items():
        k = {"classifier.3": "classifier.2", "classifier.6": "classifier.4"}.get(k.rsplit(".", 1)[0], k.rsplit(".", 1)[0]) \
            + "." + k.rsplit(".", 1)[1]
        if k == "features.0.weight":
            v = v[:, [2, 1, 0]]
        if k == "classifier.0.weight":
            v = v.reshape(4096, 512, 7, 7)
        ckpt[k] = v.clone()
    ref = vgg16(weights=None)
    ref = trm.replace_module(ref, "classifier.6", nn.Linear(4096, classes))
    trm._load_caffe_vgg16(ref, {k: v.clone() for k, v in ckpt.items()})
    return trm._caffe_vgg16_to_fc(ref).eval(), ckpt


def torchray_resnet50(classes: int):
    from torchvision.models import resnet50

    src = resnet50(weights=None)
    src.fc = nn.Linear(2048, classes)
    src.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=True)
    _randomise(src)
    ckpt = {}
    for k, v in src.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        leaf = k.rsplit(".", 1)[1]
        part = "0" if leaf.startswith("running") else "1"  # Caffe: BatchNorm, then Scale
        k = re.sub(r"(bn\d)\.(weight|bias|running_mean|running_var)$", rf"\1.{part}.\2", k)
        k = re.sub(r"(downsample\.1)\.(weight|bias|running_mean|running_var)$", rf"\1.{part}.\2", k)
        ckpt[k] = v[:, [2, 1, 0]].clone() if k == "conv1.weight" else v.clone()
    ref = resnet50(weights=None)
    ref.fc = nn.Linear(2048, classes)
    trm._load_caffe_resnet50(ref, {k: v.clone() for k, v in ckpt.items()})
    return trm._caffe_resnet50_to_fc(ref).eval(), ckpt


@pytest.mark.parametrize("name, build, classes", [
    ("vgg16_voc", torchray_vgg16, 20), ("resnet50_coco", torchray_resnet50, 80)])
def test_torchray_checkpoints_load_and_give_torchrays_outputs(name, build, classes, tmp_path, monkeypatch):
    ref, ckpt = build(classes)
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    from saliency_bench.torchray_models import FILES

    torch.save(ckpt, folder / FILES[name])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = get_model(f"torchray:{name}")  # from the hub cache
    assert model.label_space == name.split("_")[1] and len(model.classes) == classes
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 50
    with torch.no_grad():
        ours = model.net(x.contiguous(memory_format=torch.channels_last))
        theirs = ref(x).flatten(1)
    assert ours.shape == (2, classes)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max())), \
        float((ours - theirs).abs().max())
    # --weights PATH reads the same file
    assert get_model(f"torchray:{name}", weights=str(folder / FILES[name])).digest == model.digest


def test_torchray_preprocessing_is_caffes_mean_subtraction():
    model = get_model("torchray:vgg16_voc", weights="random")
    img = torch.full((1, 3, 224, 224), 200, dtype=torch.uint8)
    x = model.preprocess(img)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([200 - 123.68, 200 - 116.779, 200 - 103.939]), atol=1e-3)
    assert model.roles["gradcam"] == "features.29" and model.layer("contrast") is model.net.classifier[4]


def test_torchray_model_errors_name_the_file_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFound, match=r"vgg16_voc-b050e8c3\.pth\.tar.*hub/checkpoints"):
        get_model("torchray:vgg16_voc")
    with pytest.raises(WeightsNotFound, match="nowhere.pth"):
        get_model("torchray:vgg16_voc", weights=str(tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="resnet18_voc"):
        get_model("torchray:resnet18_voc")
    # a VGG16 checkpoint given to ResNet50: wrong keys; a COCO head given to a VOC model: wrong shapes
    _, ckpt = torchray_vgg16(80)
    path = tmp_path / "vgg16_coco.pth.tar"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"vgg16_coco\.pth\.tar does not fit model 'torchray:resnet50_voc'.*missing"):
        get_model("torchray:resnet50_voc", weights=str(path))
    with pytest.raises(ValueError, match=r"does not fit model 'torchray:vgg16_voc'.*classifier\.6\.weight"):
        get_model("torchray:vgg16_voc", weights=str(path))

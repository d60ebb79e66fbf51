"""The model zoo: the embedded model's weights and accuracy, layer roles, missing weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from saliency_bench.imageio import load_rgb, to_input
from saliency_bench.models import WeightsNotFound, imagenet_classes
from saliency_bench.registry import get_model, load_plugin_file


def test_imagenet_classes_follow_sorted_wordnet_ids():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    assert classes[0].wnid == "n01440764" and classes[0].name == "tench"
    assert classes[625].name == "lifeboat"


@pytest.mark.shared_data
def test_embedded_model_top1_on_imagenet_val_300_whole_image_resize(lite0, shared_data):
    """Whole-image resize to 224 (the benchmark geometry), mean = std = 0.5; reference 82.3%."""
    root = shared_data / "imagenet-val-300"
    labels = {}
    for line in (root / "wsol" / "class_labels.txt").read_text().split():
        name, label = line.split(",")
        labels[name.split("/")[-1]] = int(label)
    names = sorted(labels)
    correct = 0
    for i in range(0, len(names), 60):
        chunk = names[i:i + 60]
        x = lite0.preprocess(torch.stack([to_input(load_rgb(root / "val" / n), lite0.input_size) for n in chunk]))
        with torch.no_grad():
            pred = lite0.net(x).argmax(1).tolist()
        correct += sum(p == labels[n] for p, n in zip(pred, chunk))
    accuracy = correct / len(names)
    assert len(names) == 300
    assert accuracy >= 0.78, accuracy


def test_embedded_model_roles_resolve_to_the_documented_layers(lite0):
    assert lite0.layer_name("gradcam") == "bn2"
    assert lite0.layer_name("excitation") == "blocks.2"
    assert lite0.input_size == (224, 224) and lite0.mean == (0.5, 0.5, 0.5)
    feats = {}
    h = lite0.layer("excitation").register_forward_hook(lambda m, i, o: feats.update(e=o.shape) and None)
    with torch.no_grad():
        lite0.net(torch.zeros(1, 3, 224, 224))
    h.remove()
    assert feats["e"][-2:] == (28, 28)  # same resolution as GoogLeNet's maxpool2
    with pytest.raises(KeyError, match="no layer 'nope'.*gradcam"):
        lite0.layer("nope")


@pytest.mark.parametrize("name, roles", [
    ("googlenet", {"gradcam": "inception5b", "excitation": "maxpool2", "contrast": "avgpool"}),
    # TorchRay's benchmark layers (examples/attribution_benchmark.py): gradcam_layer,
    # saliency_layer (excitation backprop) and contrast_layer; the classifier its
    # _get_classifier_layer finds (the last linear layer)
    ("vgg16", {"gradcam": "features.29", "excitation": "features.23", "contrast": "classifier.4",
               "classifier": "classifier.6"}),
    ("resnet50", {"gradcam": "layer4", "excitation": "layer3", "contrast": "avgpool", "classifier": "fc"}),
    ("alexnet", {"gradcam": "features.11", "relu3": "features.7", "pool5": "features.12"}),
])
def test_torchvision_models_build_with_their_roles(name, roles):
    model = get_model(name, weights="random")
    for role, layer in roles.items():
        assert model.layer_name(role) == layer
    with torch.no_grad():
        assert model.net(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    assert model.weights == "random initialisation" and len(model.digest) == 12


def test_missing_weights_error_names_the_file_and_the_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFound) as e:
        get_model("googlenet")
    msg = str(e.value)
    assert "googlenet-1378be20.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "--weights" in msg and "never downloads" in msg
    with pytest.raises(WeightsNotFound, match="nowhere.pth"):
        get_model("vgg16", weights=str(tmp_path / "nowhere.pth"))


def test_user_weights_file_is_read_with_weights_only(tmp_path):
    src = get_model("alexnet", weights="random")
    path = tmp_path / "alexnet.pth"
    torch.save({"state_dict": src.net.state_dict()}, path)
    loaded = get_model("alexnet", weights=str(path))
    assert loaded.digest == src.digest and str(path) in loaded.weights
    torch.save({"evil": object()}, tmp_path / "pickle.pth")
    with pytest.raises(Exception):
        get_model("alexnet", weights=str(tmp_path / "pickle.pth"))


def test_a_plugin_model_works_like_a_builtin():
    from pathlib import Path

    load_plugin_file(Path(__file__).parent / "plugins" / "toy.py")
    model = get_model("toy_net")
    assert model.input_size == (32, 32) and model.class_index("one") == 1
    assert model.preprocess(torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)).abs().max() < 0.02


def test_a_coco_fine_tune_gets_an_80_way_head_and_coco_labels(tmp_path):
    """TorchRay's pointing-game models: the same architecture with an 80-class COCO head."""
    import json

    from saliency_bench.models import COCO_CATEGORIES

    src = get_model("alexnet", weights="random")
    sd = src.net.state_dict()
    sd["classifier.6.weight"] = torch.randn(80, 4096)
    sd["classifier.6.bias"] = torch.zeros(80)
    torch.save(sd, tmp_path / "alexnet_coco.pth")
    model = get_model("alexnet", weights=str(tmp_path / "alexnet_coco.pth"))
    assert model.label_space == "coco" and len(model.classes) == 80
    assert model.class_index("zebra") == 22 and model.net(torch.zeros(1, 3, 224, 224)).shape == (1, 80)
    # The bundled sample's "coco" targets index the same list.
    sample = json.loads((Path(__file__).parents[1] / "datasets" / "sample" / "instances.json").read_text())
    names = [c["name"] for c in sorted(sample["categories"], key=lambda c: c["id"])]
    assert tuple(names) == COCO_CATEGORIES


@pytest.mark.parametrize("mean,std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_preprocess_equals_torchvisions_to_tensor_and_normalize_bit_for_bit_in_channels_last(mean, std):
    import torchvision.transforms.functional as TF

    from saliency_bench.contracts import Model

    model = Model(name="m", net=torch.nn.Conv2d(3, 1, 1), input_size=(17, 23), mean=mean, std=std, classes=[])
    images = torch.randint(0, 256, (3, 3, 17, 23), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    images[0, :, 0, 0] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    expected = TF.normalize(TF.convert_image_dtype(images, torch.float32), mean, std)  # x / 255, then (x - m) / s
    x = model.preprocess(images[:, :, :, :])
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, expected)
    assert torch.equal(model.preprocess(images.permute(0, 1, 3, 2).contiguous().transpose(2, 3)), expected)  # strided input


@pytest.mark.parametrize("mean,std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                                      ((0.0, 1.0, 0.3), (1.0, 0.7, 3.0))])
def test_preprocess_table_gives_torchvisions_floats_for_every_byte_of_every_channel(mean, std):
    """The CPU path (a table per channel, ops/normalize.py) on channels-last batches, as the run
    stacks them: every byte in every channel, and random pixels, equal torchvision's
    ``normalize(convert_image_dtype(x))`` bit for bit; a tensor with NaN-free finite rows only."""
    import torchvision.transforms.functional as TF

    from saliency_bench.contracts import Model
    from saliency_bench.ops import normalize

    model = Model(name="m", net=torch.nn.Conv2d(3, 1, 1), input_size=(16, 16), mean=mean, std=std, classes=[])
    every = torch.arange(256, dtype=torch.uint8).view(16, 16)
    shift = torch.stack([every, every.roll(85), every.flip(0)])  # each channel sees every byte
    rand = torch.randint(0, 256, (5, 3, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    images = torch.cat([shift[None], rand]).contiguous(memory_format=torch.channels_last)
    expected = TF.normalize(TF.convert_image_dtype(images, torch.float32), mean, std)
    assert normalize.lookup(images, normalize.table((type(model), mean, std), model._normalise)) is not None
    x = model.preprocess(images)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, expected)
    assert torch.equal(x.view(torch.int32), expected.view(torch.int32))  # signed zeros too
    assert normalize.lookup(images.contiguous(), normalize.table((type(model), mean, std), model._normalise)) is None


def test_stacked_images_keep_torch_stacks_values_in_channels_last_memory():
    """The run's batches (``stack_images`` of :func:`to_input`'s ``[3,H,W]`` views of PIL pixels)
    hold what ``torch.stack`` would, channels-last, and preprocess to the same floats."""
    from PIL import Image

    from saliency_bench.contracts import Model
    from saliency_bench.imageio import stack_images, to_input

    rng = np.random.default_rng(3)
    views = [to_input(Image.fromarray(rng.integers(0, 256, (20 + k, 31, 3), dtype=np.uint8)), (17, 23))
             for k in range(4)]
    plain = [torch.from_numpy(rng.integers(0, 256, (3, 17, 23), dtype=np.uint8))]  # a contiguous [3,H,W] too
    for images in (views, views + plain):
        batch = stack_images(images)
        assert batch.shape == (len(images), 3, 17, 23) and batch.dtype == torch.uint8
        assert batch.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(batch, torch.stack(images))
        model = Model(name="m", net=torch.nn.Conv2d(3, 1, 1), input_size=(17, 23), mean=(0.485, 0.456, 0.406),
                      std=(0.229, 0.224, 0.225), classes=[])
        assert torch.equal(model.preprocess(batch), model.preprocess(torch.stack(images)))

"""``--model timm:ARCH``: any timm architecture, weights from a file or timm's local cache only.

Expected values come from timm itself (``create_model`` + ``load_state_dict``, its
``resolve_data_config``, ``forward_features``) and from the files laid out as the Hugging Face
hub cache lays them out.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")
from timm.data import resolve_data_config  # noqa: E402

from saliency_bench.cli import main  # noqa: E402
from saliency_bench.models import WeightsNotFound, imagenet_classes  # noqa: E402
from saliency_bench.registry import get_method, get_model  # noqa: E402
from saliency_bench.targets import Targets  # noqa: E402


def saved(tmp_path: Path, arch: str, wrap: str | None = None, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(seed)
    net = timm.create_model(arch, pretrained=False).eval()
    sd = net.state_dict()
    path = tmp_path / f"{arch}.pth"
    torch.save({wrap: sd} if wrap else sd, path)
    return path, net


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No weights anywhere: an empty Hugging Face hub cache and torch hub dir."""
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    return tmp_path


def test_weights_file_gives_timms_network_and_preprocessing(tmp_path):
    path, net = saved(tmp_path, "test_efficientnet", wrap="state_dict")
    m = get_model("timm:test_efficientnet", weights=str(path))
    data = resolve_data_config({}, model=net)
    assert m.name == "timm:test_efficientnet"
    assert m.input_size == tuple(data["input_size"][1:]) == (160, 160)
    assert m.mean == pytest.approx(data["mean"]) and m.std == pytest.approx(data["std"])
    assert m.classes == imagenet_classes() and m.label_space == "imagenet"
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(m.net(x), net(x))


@pytest.mark.parametrize("arch,gradcam", [("resnet18", "layer4"), ("efficientnet_b0", "bn2"),
                                          ("mobilenetv3_small_100", "blocks")])
def test_gradcam_role_is_the_feature_map_timm_pools(tmp_path, arch, gradcam):
    """The ``gradcam`` layer's output is ``forward_features``'s (the map global pooling reads)."""
    path, net = saved(tmp_path, arch)
    m = get_model(f"timm:{arch}", weights=str(path))
    assert m.roles["gradcam"] == gradcam
    assert m.roles["classifier"] == net.pretrained_cfg["classifier"]
    seen = []
    h = m.layer("gradcam").register_forward_hook(lambda mod, i, o: seen.append(o))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        m.net(x)
        ref = net.forward_features(x)
    h.remove()
    torch.testing.assert_close(seen[0], ref)
    assert m.layer("excitation") is not None and tuple(ref.shape[-2:]) == (7, 7)


def test_run_with_a_timm_model_and_a_weights_file(tmp_path):
    path, _ = saved(tmp_path, "resnet18")
    runs = tmp_path / "runs"
    assert main(["run", "--model", "timm:resnet18", "--weights", str(path), "--limit", "2", "--methods",
                 "gradient,grad_cam", "--runs-dir", str(runs), "--benchmarks", "pointing", "--quiet",
                 "--batch-size", "2", "--workers", "0"]) == 0
    (board,) = runs.glob("*/leaderboard.json")
    (table,) = json.loads(board.read_text())["tables"]
    assert table["model"] == "timm:resnet18"
    rows = {r["method"]: r for r in table["rows"]}
    assert set(rows) == {"gradient", "grad_cam"}
    for r in rows.values():
        assert r["coverage"]["scored"] == 2 and r["coverage"]["failed"] == 0


def test_a_missing_weights_file_is_an_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(WeightsNotFound, match="nowhere/resnet18.pth"):
        get_model("timm:resnet18", weights=str(missing))
    code = main(["run", "--model", "timm:resnet18", "--weights", str(missing), "--limit", "1", "--methods",
                 "gradient", "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert code != 0
    assert "nowhere/resnet18.pth" in capsys.readouterr().out.replace("\n", "")


def test_without_weights_and_cache_the_error_says_which_file_and_where(empty_caches):
    with pytest.raises(WeightsNotFound) as e:
        get_model("timm:resnet18")
    msg = str(e.value)
    assert "model.safetensors" in msg and "timm/resnet18.a1_in1k" in msg
    assert str(empty_caches / "hf" / "models--timm--resnet18.a1_in1k") in msg
    assert "resnet18_a1_0-d63eafa0.pth" in msg and str(empty_caches / "torch" / "checkpoints") in msg
    assert "never downloads" in msg


def test_weights_come_from_the_hub_cache_as_timm_would_have_saved_them(empty_caches):
    """A Hugging Face cache layout (refs/main -> snapshots/<rev>/model.safetensors), no network."""
    from safetensors.torch import save_file

    torch.manual_seed(3)
    net = timm.create_model("test_resnet", pretrained=False).eval()
    repo = net.pretrained_cfg["hf_hub_id"]  # timm/test_resnet.r160_in1k
    folder = empty_caches / "hf" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    (folder / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(folder / "snapshots" / "0123abcd" / "model.safetensors"))
    m = get_model("timm:test_resnet")
    assert m.weights.endswith("snapshots/0123abcd/model.safetensors")
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(m.net(x), net(x))


def test_the_layer_parameter_overrides_the_role(tmp_path):
    path, _ = saved(tmp_path, "resnet18")
    m = get_model("timm:resnet18", weights=str(path))
    x = torch.randn(2, 3, 224, 224)
    t = Targets([1, 2])
    assert get_method("grad_cam").explain(m, x, t)[0].shape == (2, 7, 7)
    assert get_method("grad_cam", layer="layer3").explain(m, x, t)[0].shape == (2, 14, 14)
    assert get_method("grad_cam", layer="stage2").explain(m, x, t)[0].shape == (2, 28, 28)  # feature_info alias


def test_an_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="timm has no model 'no_such_net'"):
        get_model("timm:no_such_net", weights="random")


def test_a_vision_transformer_gets_the_tutorials_layer_and_token_maps():
    """pytorch-grad-cam's ViT tutorial: target layer blocks[-1].norm1, tokens without the class
    token reshaped to 14x14. The pack's map at the input resolution is the library's output
    with that tutorial's reshape_transform."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m = get_model("timm:vit_tiny_patch16_224", weights="random")
    assert m.roles["gradcam"] == "blocks.11.norm1"
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    t = Targets([3, 7])
    ours = get_method("gradcam.grad_cam").explain(m, x, t)[0]
    assert ours.shape == (2, 14, 14) and ours.sum() > 0

    def reshape_transform(tensor, height=14, width=14):  # the library's ViT tutorial
        result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    with pgc.GradCAM(model=m.net, target_layers=[m.net.blocks[-1].norm1], reshape_transform=reshape_transform) as cam:
        ref = cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(3), ClassifierOutputTarget(7)])
    got = get_method("gradcam.grad_cam", resolution="input").explain(m, x, t)[0]
    torch.testing.assert_close(got, torch.as_tensor(ref), rtol=1e-5, atol=1e-5)

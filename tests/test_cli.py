"""The command line as a user meets it: list, explain, plugins, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saliency_bench.cli import main

TOY = str(Path(__file__).parent / "plugins" / "toy.py")


def test_list_methods_shows_builtins_and_a_plugin_file(capsys):
    assert main(["--plugin", TOY, "list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "gradient" in out and "brightness" in out
    assert main(["--plugin", TOY, "list", "methods", "brightness"]) == 0  # details name the source
    out = capsys.readouterr().out
    assert "plugin file" in out and "power" in out


def test_list_everything_shows_each_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("methods", "models", "datasets", "benchmarks", "efficientnet_lite0", "sample", "pointing"):
        assert name in out


def test_explain_writes_a_png_overlay_that_shows_the_heatmap(tmp_path, capsys):
    img = np.zeros((60, 80, 3), np.uint8)
    img[20:40, 50:70] = 255  # a bright square: the brightness method's heatmap peaks there
    Image.fromarray(img).save(tmp_path / "photo.png")
    out = tmp_path / "heat.png"
    assert main(["--plugin", TOY, "explain", str(tmp_path / "photo.png"), "--method", "brightness",
                 "--model", "toy_net", "--target", "one", "--out", str(out)]) == 0
    assert "class 1" in capsys.readouterr().out
    pic = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert pic.shape[1] == 160  # overlay and heatmap side by side
    heat = pic[-60:, 80:]  # the plain heatmap panel (below the title bar)
    hot = heat[25:35, 55:65]
    cold = heat[2:10, 2:10]
    # jet: the peak is dark red, the background dark blue
    assert hot[..., 0].mean() > 100 and hot[..., 2].mean() < 30
    assert cold[..., 2].mean() > 100 and cold[..., 0].mean() < 30


@pytest.mark.shared_data
def test_explain_with_the_embedded_model_on_a_real_photo(tmp_path, shared_data, capsys):
    photo = shared_data / "imagenet-val-300" / "val" / "ILSVRC2012_val_00000556.JPEG"
    out = tmp_path / "grad.png"
    assert main(["explain", str(photo), "-m", "gradient", "-o", str(out)]) == 0
    assert "lifeboat" in capsys.readouterr().out  # the embedded model's top class for this photo
    assert Image.open(out).size == (2 * 227, 227 + 18)


def test_unknown_method_is_an_error_listing_the_known_ones(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["explain", str(tmp_path / "x.png"), "-m", "nope"]) == 2
    assert "no method matches 'nope'" in capsys.readouterr().out


def test_list_benchmarks_shows_their_options_with_grids_in_short(capsys):
    import os

    os.environ["COLUMNS"] = "300"
    try:
        assert main(["list", "benchmarks", "pointing"]) == 0
        out = capsys.readouterr().out
        assert main(["list", "benchmarks", "localization"]) == 0
    finally:
        del os.environ["COLUMNS"]
    out += capsys.readouterr().out
    assert "resolution" in out and "'original'" in out and "'mean'" in out
    assert "{value: 0:0.05:0.95, energy: 0:0.05:0.95, mean: 0:0.5:10}" in out

"""``perf/gpu.sh``, the one call that measures every GPU speed figure, run on the CPU with
the tiny settings from a source tree *without* the package installed (as on the GPU machine):
every section is in the JSON, every peer that imports has numbers, and the targets are judged.
Plus the parts whose arithmetic a slow, shared CPU cannot show: the mask's step extrapolation
(on a fake clock) and the failure isolation of one measurement."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "perf"

def _hide_install() -> str:
    """``bench_common.HIDE_INSTALL``: a sitecustomize that hides the installed distribution (no
    editable finder, no entry points of ours), leaving the source tree on PYTHONPATH, as
    `PYTHONPATH=. bash perf/gpu.sh` has it."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_common
    finally:
        sys.path.remove(str(BENCH))
    return bench_common.HIDE_INSTALL


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_common
    import bench_perturbation

    return types.SimpleNamespace(common=bench_common, perturbation=bench_perturbation)


@pytest.fixture
def clock(bench, monkeypatch) -> list[float]:
    """A fake clock for the timers: a call advances it by what it says it costs."""
    now = [0.0]
    fake = types.SimpleNamespace(perf_counter=lambda: now[0])
    from saliency_bench import timing

    for mod in (timing, bench.common, bench.perturbation):
        monkeypatch.setattr(mod, "time", fake)
    return now


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_sh")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(_hide_install())
    env = dict(os.environ, PYTHONPATH=str(tmp / "site"), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(BENCH / "gpu.sh"), "--device", "cpu", "--tiny", "--out-dir", str(tmp / "out")],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted((tmp / "out").glob("gpu-cpu-*.json"))
    assert len(files) == 1, list((tmp / "out").iterdir())
    return json.loads(files[0].read_text()), files[0], done.stdout


def _rate(r: dict) -> float:
    assert "error" not in r, r
    timing = r.get("measured", r)  # a mask record keeps its timing of the measured step count
    assert r["images_per_s"] > 0 and timing["repeats"] >= 1 and len(timing["seconds"]) == timing["repeats"]
    return r["images_per_s"]


def test_gpu_sh_without_install_registers_the_built_ins_from_the_source_tree(tiny_run):
    doc, path, stdout = tiny_run
    meta = doc["meta"]
    assert meta["registration"] == "source tree"
    assert meta["device"] == "cpu" and meta["torch"] == torch.__version__ and meta["device_name"]
    assert meta["settings"]["batch"] == 2 and meta["settings"]["steps"] == 300
    assert "targets (docs/PERFORMANCE.md §1)" in stdout
    assert "targets (docs/PERFORMANCE.md §1)" in path.with_suffix(".txt").read_text()


def test_gpu_sh_ceilings_in_fp32_and_bf16_channels_last_and_contiguous(tiny_run):
    c = tiny_run[0]["models"]["googlenet"]["ceilings"]
    for kind, batch in (("forward_backward", 2), ("forward", 4)):
        assert set(c[kind]) == {"fp32_channels_last", "fp32_contiguous", "bf16_channels_last", "bf16_contiguous"}
        for r in c[kind].values():
            _rate(r)
            assert r["images"] == batch


def test_gpu_sh_backprop_methods_beside_installed_peers(tiny_run):
    bp = tiny_run[0]["models"]["googlenet"]["backprop"]
    fb = bp["ceiling"]["fp32"]
    for name in ("gradient", "guided_backprop", "grad_cam", "excitation_backprop", "contrastive_excitation_backprop"):
        r = bp["methods"][name]["default"]
        assert r["fraction_of_forward_backward"] == pytest.approx(_rate(r) / fb)
        assert r["network_images_per_image"] == 1  # one forward pass per image
    for peer, module in (("pytorch_grad_cam.GradCAM", "pytorch_grad_cam"), ("captum.Saliency", "captum"),
                         ("captum.LayerGradCam", "captum")):
        r = bp["peers"][peer]
        if importlib.util.find_spec(module) is None:
            assert r["status"] == "not installed"
        else:
            assert r["fraction_of_forward_backward"] == pytest.approx(_rate(r) / fb)
            assert r["version"]


def test_gpu_sh_occlusion_counts_the_masked_copies(tiny_run):
    occ = tiny_run[0]["models"]["googlenet"]["occlusion"]
    fwd = occ["ceiling"]["fp32"]
    for name in ("occlusion", "blur_occlusion"):
        r = occ["methods"][name]["default"]
        copies = r["network_images_per_image"]
        assert copies > 10  # a grid of masked copies, not one pass
        assert r["fraction_of_forward"] == pytest.approx(_rate(r) * copies / fwd)
    r = occ["peers"]["captum.Occlusion"]
    if importlib.util.find_spec("captum") is None:
        assert r["status"] == "not installed"
    else:
        assert r["network_images_per_image"] > 1 and r["fraction_of_forward"] > 0
        assert occ["captum_perturbations_per_eval"] == 4  # a forward batch of copies


def test_gpu_sh_mask_every_speed_variant_beside_the_per_image_loop(tiny_run, bench):
    from saliency_bench.registry import get_method

    mask = tiny_run[0]["models"]["googlenet"]["mask"]
    knobs = [k for k in bench.common.SPEED_KNOBS if get_method("mask").defaults.get(k) is False]
    assert "amp" in knobs
    assert set(mask["variants"]) == {"default", *knobs} | ({"+".join(knobs)} if len(knobs) > 1 else set())
    loop = mask["per_image_loop"]
    assert loop["batch"] == 1 and loop["images"] == 1 and _rate(loop)
    assert loop["params"]["iterations"] == 300 and not any(loop["params"].get(k) for k in knobs)
    for v, r in mask["variants"].items():
        assert r["steps"] == 300 and r["measured_steps"] == 2 and r["extrapolated"] and "extrapolation" in r
        assert [p["steps"] for p in r["probes"]] == [1, 2]
        assert all(r["params"][k] for k in bench.common.speed_variants(get_method("mask"))[v])
        assert r["fraction_of_steps_x_forward_backward"] == pytest.approx(_rate(r) * 300 / mask["ceiling"]["fp32"])
        assert r["speedup_vs_per_image_loop"] == pytest.approx(r["images_per_s"] / loop["images_per_s"])


def test_gpu_sh_torchray_section_times_ours_beside_torchrays_per_image_functions(tiny_run):
    """RISE and extremal perturbation batched beside TorchRay's per-image functions (issue 24)."""
    pytest.importorskip("torchray")
    tr = tiny_run[0]["models"]["googlenet"]["torchray"]
    assert tr["images"] == 2 and tr["torchray_images"] == 1 and "version" in tr["peer"]["torchray"]
    for name, params in (("rise", {"masks": 32}), ("extremal_perturbation", {"iterations": 2})):
        r = tr["methods"][name]
        assert "error" not in r, r
        assert r["params"].items() >= params.items()
        assert r["images_per_s"] == pytest.approx(2 / r["ours_s"])
        assert r["speedup_vs_torchray_per_image"] == pytest.approx(r["torchray_s_per_image"] * 2 / r["ours_s"])
    assert tr["methods"]["extremal_perturbation"]["params"]["areas"] == [0.025, 0.05, 0.1, 0.2]


def test_gpu_sh_judges_every_target(tiny_run):
    rows = tiny_run[0]["targets"]
    judged = {(r["section"], r["target"].split(" ")[0]) for r in rows if isinstance(r["pass"], bool)}
    assert judged == {("backprop", "fraction_of_forward_backward"), ("occlusion", "fraction_of_forward"),
                      ("mask", "fraction_of_steps_x_forward_backward"), ("mask", "speedup_vs_per_image_loop")}
    for r in rows:
        assert r["value"] is not None, r
        assert r["pass"] == (r["value"] >= r["threshold"])


def test_mask_steps_are_extrapolated_along_the_line_through_two_step_counts(bench, clock):
    def run(k: int):
        def call() -> None:
            clock[0] += 0.5 + 0.02 * k  # 0.5 s fixed (the init), 20 ms a step
        return call

    cpu = torch.device("cpu")
    full = bench.perturbation.steps_timing(run, cpu, 4, steps=300, probe=2, max_steps=300, repeats=2, max_s=1e9)
    assert not full["extrapolated"] and full["measured_steps"] == 300
    assert full["seconds_per_call"] == pytest.approx(6.5) and full["images_per_s"] == pytest.approx(4 / 6.5)
    # 3 s allowed: warm-up and probes at 2 and 4 steps use 1.66 s; two repeats of 8 steps fit.
    cut = bench.perturbation.steps_timing(run, cpu, 4, steps=300, probe=2, max_steps=300, repeats=2, max_s=3.0)
    assert cut["extrapolated"] and cut["measured_steps"] == 8 and cut["measured"]["repeats"] == 2
    assert cut["seconds_per_call"] == pytest.approx(6.5)
    capped = bench.perturbation.steps_timing(run, cpu, 4, steps=300, probe=2, max_steps=5, repeats=1, max_s=1e9)
    assert capped["measured_steps"] == 5 and capped["seconds_per_call"] == pytest.approx(6.5)


def test_mask_steps_without_a_slope_are_charged_in_full_to_the_steps(bench, clock):
    def run(k: int):
        def call() -> None:
            clock[0] += 1.0  # as flat as noise can make it: no cost per step is visible
        return call

    r = bench.perturbation.steps_timing(run, torch.device("cpu"), 1, steps=300, probe=2, max_steps=8, repeats=1,
                                        max_s=1e9)
    assert r["measured_steps"] == 8 and "too noisy" in r["extrapolation"]
    assert r["seconds_per_call"] == pytest.approx(300 / 8)  # the slower bound, never a flattering one


def test_a_failing_method_or_missing_peer_does_not_lose_the_others(bench):
    from saliency_bench.registry import get_model, load_plugin_file

    load_plugin_file(ROOT / "tests" / "plugins" / "toy.py")
    model = get_model("toy_net")
    x, t = bench.common.random_inputs(model, 2, 16)

    class Broken:
        def __init__(self, *a):
            raise RuntimeError("peer broke")

    peers = {"ghost": ("no_such_module_for_saliency_bench", None), "broken": ("math", Broken)}
    out, saves = {}, []
    bench.common.methods_beside_peers(model, x, t % 2, out, lambda: saves.append(1),
                                      methods=["no_such_method", "gradient"], peers=peers, ceiling={"fp32": 100.0},
                                      key="fraction_of_forward_backward", per_copy=False, warmup=0, repeats=2,
                                      log=lambda _: None)
    assert "no method matches 'no_such_method'" in out["methods"]["no_such_method"]["default"]["error"]
    r = out["methods"]["gradient"]["default"]
    assert r["fraction_of_forward_backward"] == pytest.approx(_rate(r) / 100.0)
    assert out["peers"]["ghost"]["status"] == "not installed"
    assert "peer broke" in out["peers"]["broken"]["error"]
    assert len(saves) == 4  # the file is rewritten after every measurement


def test_budget_shares_what_is_left_among_the_steps_to_come(bench):
    b = bench.common.Budget(100.0)
    for w in (1.0, 3.0):
        b.plan(w)
    assert b.allot(1.0) == pytest.approx(25.0, abs=0.5)
    assert b.allot(3.0) == pytest.approx(100.0, abs=0.5)  # the last step gets all that is left
    assert bench.common.Budget(None).allot(1.0) == float("inf")


def test_gpu_sh_end_to_end_runs_the_harness_beside_each_method_alone(tiny_run):
    """The e2e section: a real run per method over JPEGs + VOC XMLs it wrote, its samples/s
    beside the method's alone, the CPU cores it kept busy and where its time went."""
    e2e = tiny_run[0]["e2e"]
    assert "error" not in e2e, e2e
    assert e2e["dataset"]["images"] == 8 and e2e["dataset"]["bytes"] > 0
    assert e2e["cores"] >= 1 and e2e["scoring_workers"] == 1
    assert set(e2e["methods"]) == {"gradient", "grad_cam", "occlusion", "mask"}
    for name, r in e2e["methods"].items():
        assert r["returncode"] == 0, r.get("error")
        # every image scored by localization and by pointing (on its boxes)
        assert r["samples"] == r["outcomes"] == r["outcomes_ok"] == r["images"], (name, r)
        assert r["records"] == 2 * r["images"], (name, r)
        assert r["harness_samples_per_s"] == pytest.approx(r["samples"] / r["pass_s"])
        assert r["efficiency"] == pytest.approx(r["harness_samples_per_s"] / r["isolated"]["samples_per_s"])
        assert 0 < r["method_s"] <= r["pass_s"] < r["wall_s"]
        assert r["startup_s"] + r["method_s"] + r["rest_of_pass_s"] == pytest.approx(r["wall_s"])
        assert r["cpu_cores_used"] > 0
    assert "efficiency" in tiny_run[2] and "CPU cores busy" in tiny_run[2]


def test_gpu_sh_profile_counts_operators_copies_and_host_reads_of_each_call(tiny_run):
    """The profile section: one call of each slow method, the control, the references and Captum
    ``Occlusion`` under torch.profiler, counted per image sent through the network."""
    prof = tiny_run[0]["models"]["googlenet"]["profile"]
    calls = prof["calls"]
    names = {"forward+backward", "forward", "gradient", "guided_backprop", "excitation_backprop",
             "contrastive_excitation_backprop", "occlusion", "blur_occlusion", "captum.Occlusion"}
    assert set(calls) == names
    for name, r in calls.items():
        if name == "captum.Occlusion" and importlib.util.find_spec("captum") is None:
            assert r["status"] == "not installed"
            continue
        assert "error" not in r, (name, r)
        assert r["aten_ops"] > 0 and r["wall_s"] > 0 and r["top_self"], name
        assert r["aten_ops_per_network_image"] == pytest.approx(r["aten_ops"] / r["network_images"])
    assert calls["forward+backward"]["network_images"] == 2 and calls["forward"]["network_images"] == 4
    assert calls["occlusion"]["network_images"] == 28 * 28 + 1  # every square's copy and the image
    # The guided rule is ReLU's own backward on the clamped gradient: no float copy of a mask per
    # ReLU (GoogLeNet has 57; the product with the mask made one each).
    assert calls["guided_backprop"]["copies"]["count"] <= calls["gradient"]["copies"]["count"] + 5


def test_profile_counts_copies_and_host_reads_by_hand(bench, monkeypatch):
    """Hand-counted: a cast is one ``copy_``; ``item`` and ``nonzero`` are host reads (a sync
    each on a GPU); the hook counts the images through the network."""
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_profile

    model = types.SimpleNamespace(net=torch.nn.Identity(), device="cpu")
    x = torch.arange(6.0).view(3, 2)

    def call():
        y = model.net(x).double()  # one copy
        return y.sum().item(), torch.nonzero(y > 2)  # two host reads

    r = bench_profile.profile_call(call, model, 3, warmup=1)
    assert r["network_images"] == 3 and r["images"] == 3
    assert r["copies"]["count"] == 1
    assert r["host_reads"] == {"aten::_local_scalar_dense": 1, "aten::nonzero": 1} and r["host_reads_total"] == 2
    assert "aten::sum" in r["top_self"] and r["top_self"]["aten::sum"]["count"] == 1
    assert bench_profile._union_s([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == pytest.approx(4e-6)


def test_profile_section_skips_the_calls_left_once_its_share_is_spent(bench, monkeypatch):
    """Calls in order of importance; once ``max_s`` is spent the rest are recorded as skipped (on
    a fake clock: each profiled call costs 1 s)."""
    import bench_profile
    from saliency_bench.registry import get_model, load_plugin_file

    load_plugin_file(ROOT / "tests" / "plugins" / "toy.py")
    model = get_model("toy_net")
    x, t = bench.common.random_inputs(model, 2, 16)
    now = [0.0]
    monkeypatch.setattr(bench_profile, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def fake_profile(fn, model, images, *, warmup=1):
        now[0] += 1.0
        return {"aten_ops": 1, "network_images": images, "aten_ops_per_network_image": 1.0, "copies": {"count": 0},
                "host_reads_total": 0, "top_self": {}}

    monkeypatch.setattr(bench_profile, "profile_call", fake_profile)
    out: dict = {}
    bench_profile.profile_section(model, x, t % 2, out, lambda: None, occlusion_images=1, forward_batch=2, per_eval=2,
                                  methods=["guided_backprop", "gradient"], max_s=1.5, log=lambda _: None)
    assert list(out["calls"]) == ["forward+backward", "guided_backprop", "gradient"]
    assert "skipped" not in out["calls"]["forward+backward"] and "skipped" not in out["calls"]["guided_backprop"]
    assert out["calls"]["gradient"]["skipped"].startswith("time share spent (2 of 1.5 s)")

"""The first run on a machine compiles the scoring kernels (numba), which takes about half a
minute: the run says so before it starts, and only then. numba itself is the reference for
what its cache holds: a fresh process with an empty cache folder, before and after a kernel's
first call."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from saliency_bench import registry
from saliency_bench.cli import main

KERNEL_MODULES = ("saliency_bench.ops.kept_order", "saliency_bench.ops.pil_resize", "saliency_bench.ops.contour_runs",
                  "saliency_bench.ops.contour_pixels", "saliency_bench.ops.normalize",
                  "saliency_bench.benchmarks.maxboxacc", "saliency_bench.benchmarks.imputation_cpu")


def _python(code: str, cache: str) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def test_a_module_is_uncached_until_numba_has_compiled_one_of_its_kernels_here(tmp_path):
    code = ("import json, numpy as np; from saliency_bench.ops import jit, kept_order; "
            "mod = 'saliency_bench.ops.kept_order'; before = jit.uncached([mod]); "
            "kept_order.map_order(np.random.default_rng(0).random((9, 9), dtype=np.float32)); "
            "print(json.dumps([before, jit.uncached([mod])]))")
    before, after = json.loads(_python(code, str(tmp_path)))
    assert before == ["saliency_bench.ops.kept_order"] and after == []
    # a new process finds the kernel in the cache folder; another module is still to compile
    code = "import json; from saliency_bench.ops import jit; print(json.dumps(jit.uncached(%r)))" % (
        ["saliency_bench.ops.kept_order", "saliency_bench.ops.contour_pixels"],)
    assert json.loads(_python(code, str(tmp_path))) == ["saliency_bench.ops.contour_pixels"]


def test_localization_names_every_module_whose_kernels_its_scoring_runs():
    """Noisy and smooth maps, so that both contour paths run; the modules whose dispatchers hold a
    compiled kernel afterwards are exactly the ones the benchmark names (the runner's note checks
    those)."""
    code = ("import json, importlib, numpy as np, torch\n"
            "from saliency_bench.benchmarks.localization import Localization\n"
            "from saliency_bench.contracts import Sample\n"
            "rng = np.random.default_rng(0)\n"
            "noisy = rng.random((2, 224, 224), dtype=np.float32) ** 4\n"
            "smooth = torch.nn.functional.interpolate(torch.rand(2, 1, 7, 7), size=(224, 224), mode='bicubic',\n"
            "                                         align_corners=False)[:, 0].numpy()\n"
            "maps = np.concatenate([noisy, smooth])\n"
            "samples = [Sample(id=str(i), image=None, size=(375, 500), targets={}, category='c',\n"
            "                  boxes=np.array([[100, 80, 400, 300]], np.float32)) for i in range(4)]\n"
            "Localization(bootstrap=0).score_batch(samples, maps, (224, 224))\n"
            f"mods = {KERNEL_MODULES!r}\n"
            "used = [m for m in mods if m in __import__('sys').modules and\n"
            "        importlib.import_module(m).jit._compiled and\n"
            "        any(d.overloads for d in importlib.import_module(m).jit._compiled.values())]\n"
            "print(json.dumps(used))")
    used = json.loads(_python(code, os.environ.get("NUMBA_CACHE_DIR", "")))  # "": numba's usual folders
    from saliency_bench.benchmarks.localization import Localization

    assert sorted(used) == sorted(Localization().compiled_kernels("cpu"))


def test_road_names_the_compiled_imputation_only_where_it_runs_it():
    from saliency_bench.benchmarks.road import Road

    assert Road().compiled_kernels("cpu") == ("saliency_bench.benchmarks.imputation_cpu",)
    assert Road().compiled_kernels("cuda") == ()
    assert Road(solver="cg").compiled_kernels("cpu") == ()


@pytest.fixture
def installed_only(monkeypatch):
    for kind in ("methods", "benchmarks"):
        fresh = registry.Registry(kind)
        monkeypatch.setattr(registry, kind, fresh)
        monkeypatch.setitem(registry.REGISTRIES, kind, fresh)


@pytest.mark.parametrize("cold", [True, False], ids=["first-run", "cached"])
def test_the_run_says_it_is_compiling_only_when_numba_has_nothing_cached(tmp_path, capsys, monkeypatch,
                                                                        installed_only, cold):
    from saliency_bench.ops import jit

    asked = []

    def uncached(modules):
        asked.append(list(modules))
        return list(modules) if cold else []

    monkeypatch.setattr(jit, "uncached", uncached)
    assert main(["run", "--limit", "2", "--runs-dir", str(tmp_path / "runs"), "--workers", "0", "--quiet",
                 "--methods", "center", "--benchmarks", "pointing,localization"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    from saliency_bench.benchmarks.localization import Localization

    assert asked == [sorted(Localization().compiled_kernels("cpu"))]  # pointing compiles nothing
    said = "compiling the scoring kernels of localization for this machine"
    assert (said in out) == cold, out

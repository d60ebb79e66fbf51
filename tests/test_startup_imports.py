"""Start-up imports only what it uses: ``--help`` no torch, ``list methods`` no pack library
(Captum, pytorch-grad-cam, scikit-learn), no timm, torchvision, numba or OpenCV; a selected
pack method imports its library when it runs. (How long start-up takes: perf/test_speed_startup.py.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = {"torch", "captum", "pytorch_grad_cam", "sklearn", "timm", "torchvision", "numba", "cv2"}


def _imported(code: str) -> set[str]:
    code = (f"import sys\n{code}\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r})), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(eval(out.stderr.strip().splitlines()[-1]))


def test_help_imports_no_torch():
    assert _imported("from saliency_bench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
                     "    pass\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass") == set()


def test_listing_methods_imports_no_pack_library():
    assert _imported("from saliency_bench.cli import main\nassert main(['list', 'methods']) == 0") == {"torch"}


@pytest.mark.parametrize("pack,library", [("captum.saliency", "captum"), ("gradcam.grad_cam", "pytorch_grad_cam")])
def test_a_pack_method_imports_its_library_when_it_runs(pack, library):
    pytest.importorskip(library)
    code = ("from small_nets import inputs40, run, small_model\n"
            "from saliency_bench.registry import get_method\n"
            f"get_method('{pack}')\n"
            f"assert '{library}' not in sys.modules, 'imported before the method ran'\n"
            f"assert run('{pack}', small_model(), inputs40(), [[1], [2], [3]]).shape[0] == 3")
    assert library in _imported(code)


@pytest.mark.parametrize("given,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_line_lets_idle_openmp_threads_sleep_unless_told_otherwise(given, expected):
    """``saliency-bench`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch (and with it OpenMP) is
    first imported, and keeps a policy the user set."""
    import os

    from policy_probe import probe_code

    code = probe_code("from saliency_bench.cli import main\n"
                      "assert main(['list', 'methods']) == 0\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                         cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"policy at torch import [{expected!r}]" in out.stdout


def test_a_process_that_already_has_torch_keeps_its_openmp_settings(monkeypatch):
    import os

    import torch  # noqa: F401  (OpenMP is loaded: a policy set now would not be read)

    from saliency_bench.cli import quiet_idle_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    quiet_idle_threads()
    assert "OMP_WAIT_POLICY" not in os.environ

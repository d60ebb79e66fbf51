"""``perf/ab_run.py`` (two codes' whole runs, interleaved) on a few synthetic JPEGs: each side
runs its own tree, every round is kept, and the medians and the ratio follow from them."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ab_run_times_both_codes_round_by_round(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "perf"))
    import ab_run
    import bench_e2e

    data = tmp_path / "data"
    bench_e2e.write_dataset(data, 4, sizes=((64, 48),), procs=1)
    out = tmp_path / "ab.json"
    res = ab_run.main(["--a", str(ROOT), "--b", str(ROOT), "--data", f"imagenet:{data}", "--rounds", "1",
                       "--short", "1", "--full", "3", "--no-warm-up", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    for side in ("a", "b"):
        assert res[side]["code"] == str(ROOT) and len(res[side]["rounds"]) == 1
        per = sorted(r["ms_per_sample"] for r in res[side]["rounds"])
        assert res[side]["median_ms_per_sample"] == per[len(per) // 2]
        for r in res[side]["rounds"]:
            assert "cpu_ms_per_sample" in r and r["pil_ms"] > 0 and abs(r["over_pil"] - r["ms_per_sample"] / r["pil_ms"]) < 1e-9
    cpu = sorted(r["cpu_ms_per_sample"] for r in res["b"]["rounds"])
    assert res["b"]["median_cpu_ms_per_sample"] == cpu[len(cpu) // 2]
    assert res["b_speedup_over_a"] == res["a"]["median_ms_per_sample"] / res["b"]["median_ms_per_sample"]
    assert res["samples"] == [1, 3]


def test_ab_run_steady_times_the_batches_inside_each_run(tmp_path, monkeypatch):
    """``--steady``: one run per side and round, timed at each batch's end from inside the run; the
    rate is taken between the first and the next-to-last batch (3 of the 5 one-image batches)."""
    monkeypatch.syspath_prepend(str(ROOT / "perf"))
    import ab_run
    import bench_e2e

    data = tmp_path / "data"
    bench_e2e.write_dataset(data, 5, sizes=((64, 48),), procs=1)
    res = ab_run.main(["--a", str(ROOT), "--b", str(ROOT), "--data", f"imagenet:{data}", "--rounds", "1",
                       "--full", "5", "--no-warm-up", "--steady", "--run-arg=--batch-size=1"])
    assert res["samples"] == [5] and res["mode"].startswith("steady")
    for side in ("a", "b"):
        (r,) = res[side]["rounds"]
        assert 0 < r["ms_per_sample"] < r["run_s"] * 1e3 / 3  # three samples' share of the whole run, at most
        assert r["cpu_ms_per_sample"] > 0 and "startup_s" not in r
        assert res[side]["median_ms_per_sample"] == r["ms_per_sample"]


def test_the_steady_boot_starts_as_the_command_line_does(tmp_path):
    """``steady_boot.py`` lets idle OpenMP threads sleep before torch is first imported, as
    ``saliency-bench`` does: a run it times is the run a user makes."""
    import os
    import subprocess
    import sys

    from policy_probe import probe_code

    code = probe_code("sys.argv = ['steady_boot.py', 'list', 'methods']\n"
                      f"runpy.run_path({str(ROOT / 'perf' / 'steady_boot.py')!r}, run_name='__main__')\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(AB_MARKS=str(tmp_path / "marks.json"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "policy at torch import ['PASSIVE']" in out.stdout


def test_ab_methods_runs_each_side_on_its_own_trees_methods(tmp_path, monkeypatch):
    """``perf/ab_methods.py``: each side's process imports the methods of its own tree, even with
    the package installed in editable mode (which would serve ``saliency_bench.methods`` from the
    install); every round is kept and the medians follow from them."""
    import shutil
    import statistics

    monkeypatch.syspath_prepend(str(ROOT / "perf"))
    import ab_methods

    other = tmp_path / "other"
    for part in ("saliency_bench", "methods", "perf"):
        shutil.copytree(ROOT / part, other / part, ignore=shutil.ignore_patterns("__pycache__", "results"))
    out = tmp_path / "ab.json"
    res = ab_methods.main(["--a", str(ROOT), "--b", str(other), "--size", "32", "--batch", "1", "--calls", "2",
                           "--rounds", "2", "--methods", "gradient,guided_backprop", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    for side, tree in (("a", ROOT), ("b", other)):
        assert len(res["rounds"][side]) == 2
        for r in res["rounds"][side]:
            assert r["registration"] == "source tree" and Path(r["methods_from"]) == (tree / "methods").resolve()
            fb = r["median_s"]["forward+backward"]
            assert r["fraction_of_forward_backward"]["guided_backprop"] == fb / r["median_s"]["guided_backprop"]
        assert res["median_fraction_of_forward_backward"][side]["gradient"] == statistics.median(
            r["fraction_of_forward_backward"]["gradient"] for r in res["rounds"][side])

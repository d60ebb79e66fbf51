"""The harness end to end: failures recorded not fatal, resume after SIGKILL, concurrent stores."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saliency_bench.cli import main
from saliency_bench.cache import VERSION

from interrupt import start_and_wait

TOY = str(Path(__file__).parent / "plugins" / "toy.py")


def _run(runs: Path, *extra: str) -> int:
    return main(["--plugin", TOY, "run", "--model", "toy_net", "--dataset", "toy", "--runs-dir", str(runs),
                 "--workers", "0", "--batch-size", "4", "--quiet", *extra])


def _run_dir(runs: Path) -> Path:
    (d,) = [p for p in runs.iterdir() if p.is_dir() and p.name.startswith("run-")]
    return d


def _board(runs: Path) -> dict:
    return json.loads((_run_dir(runs) / "leaderboard.json").read_text())


def _rows(board: dict) -> dict:
    return {r["method"]: r for t in board["tables"] for r in t["rows"]}


def test_failures_are_recorded_per_sample_and_the_run_goes_on(tmp_path):
    assert _run(tmp_path, "--methods", "brightness,nan_on_corner,raise_on_corner,wrong_shape,corner_point,"
                "with_diagnostics", "--benchmarks", "pointing,runtime") == 0
    rows = _rows(_board(tmp_path))
    diagnostics = rows["with_diagnostics"]["coverage"]["diagnostics"]
    assert diagnostics["converged"] == {"true": 6, "false": 1} and diagnostics["loss"]["nan"] == 0
    # toy002, toy005, toy008 fail to decode; toy004 has the bright corner.
    assert rows["brightness"]["coverage"] | {"failures": None} == {
        "scored": 7, "failed": 3, "not_evaluable": 0, "total": 10, "failures": None}
    reasons = {f["id"]: f["reason"] for f in rows["nan_on_corner"]["coverage"]["failures"]}
    assert set(reasons) == {"toy002", "toy004", "toy005", "toy008"}
    assert "non-finite" in reasons["toy004"] and "truncated" in reasons["toy002"]
    raised = {f["id"]: f["reason"] for f in rows["raise_on_corner"]["coverage"]["failures"]}
    assert "raised RuntimeError: bright corner" in raised["toy004"] and len(raised) == 4  # isolated to one sample
    assert rows["wrong_shape"]["coverage"]["scored"] == 0
    assert "expected heatmaps" in rows["wrong_shape"]["coverage"]["failures"][0]["reason"]
    assert rows["brightness"]["pointing_all"]["value"] is not None
    # A point method plugs into the pointing game: (0, 0) hits a square whose corner is within 15 px.
    hits: dict[int, list[bool]] = {0: [], 1: []}
    for i in range(10):
        if i % 3 != 2:  # the undecodable samples are not scored
            x0, y0 = 8 + (i * 7) % 30, 6 + (i * 5) % 20
            hits[i % 2].append(x0 ** 2 + y0 ** 2 < 15 ** 2)
    expected = 100 * sum(sum(h) / len(h) for h in hits.values()) / 2
    assert rows["corner_point"]["pointing_all"]["value"] == pytest.approx(expected)
    md = (_run_dir(tmp_path) / "leaderboard.md").read_text()
    assert "| nan_on_corner |" in md and "6/10 (4 failed)" in md
    assert "7/10 (3 failed, 1 not converged)" in md  # with_diagnostics: toy004 did not converge
    html = (_run_dir(tmp_path) / "leaderboard.html").read_text()
    assert "<script>" in html and "data:image/jpeg;base64" in html


def test_point_method_is_skipped_for_localization_and_says_so(tmp_path, capsys):
    _run(tmp_path, "--methods", "corner_point,brightness", "--benchmarks", "localization")
    out = capsys.readouterr().out
    assert "corner_point x localization" in out and "cannot be scored" in out
    rows = _rows(_board(tmp_path))
    assert rows["brightness"]["loc_error_value"]["value"] is not None
    assert "loc_error_value" not in rows["corner_point"]


def _comparable(runs: Path) -> tuple:
    con = sqlite3.connect(runs / "store.sqlite")
    records = con.execute("SELECT model, dataset, method, benchmark, sample_id, record FROM records "
                          "ORDER BY 1,2,3,4,5").fetchall()
    outcomes = con.execute("SELECT model, dataset, method, sample_id, ok, reason FROM outcomes "
                           "ORDER BY 1,2,3,4").fetchall()
    metrics = con.execute("SELECT model, dataset, method, benchmark, metrics FROM metrics "
                          "WHERE benchmark NOT IN ('runtime') AND method != '__model__' ORDER BY 1,2,3,4").fetchall()
    con.close()
    return records, outcomes, metrics


def test_a_run_killed_with_sigkill_resumes_to_the_same_results(tmp_path):
    args = ["--methods", "sleepy,brightness", "--benchmarks", "pointing,localization,runtime", "-d", "n=16"]
    assert _run(tmp_path / "straight", *args) == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "saliency_bench", "--plugin", TOY, "run", "--model", "toy_net", "--dataset", "toy",
           "--runs-dir", str(killed), "--workers", "0", "--batch-size", "4", "--quiet", *args]
    proc, done = start_and_wait(cmd, killed / "store.sqlite", "sleepy", 4, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 4 <= done < 16
    assert not (killed / _run_dir(killed).name / "leaderboard.json").exists()
    assert _run(killed, *args) == 0
    assert _comparable(killed) == _comparable(tmp_path / "straight")
    a, b = _board(killed), _board(tmp_path / "straight")
    strip = lambda board: {m: {k: v for k, v in r.items() if k not in ("images_per_s", "ms_per_image",
                                                                     "passes_per_image", "peak_mem_mb")}
                           for m, r in _rows(board).items()}
    assert strip(a) == strip(b)


def test_rerunning_a_finished_run_computes_nothing_and_reuses_the_cache(tmp_path):
    assert _run(tmp_path, "--methods", "brightness", "--benchmarks", "pointing") == 0
    cache_files = sorted((tmp_path / "cache").rglob("*.npz"))
    assert cache_files
    mtimes = [f.stat().st_mtime_ns for f in cache_files]
    # A different run (other benchmarks) reuses the cached heatmaps instead of recomputing them.
    assert _run(tmp_path, "--methods", "brightness", "--benchmarks", "localization") == 0
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "cache").rglob("*.npz"))] == mtimes


def test_concurrent_runs_share_one_store_without_corrupting_it(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "saliency_bench", "--plugin", TOY, "run", "--model", "toy_net",
                               "--dataset", "toy", "--runs-dir", str(tmp_path), "--workers", "0", "--batch-size", "2",
                               "--quiet", "--methods", m, "--benchmarks", "pointing", "-d", "n=12"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for m in ("brightness", "sleepy")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    con = sqlite3.connect(tmp_path / "store.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(DISTINCT run_id) FROM runs").fetchone()[0] == 2
    assert con.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 24


def test_a_store_opened_while_another_process_writes_it_waits_for_the_switch_to_wal(tmp_path):
    """SQLite refuses the switch to WAL at once, busy timeout or not, while another connection
    holds a write lock on a new file; the second of two runs started together met that."""
    import threading
    import time

    from saliency_bench.store import Store
    path = tmp_path / "store.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    start = time.monotonic()
    store = Store(path)  # raised "database is locked" at once before
    assert time.monotonic() - start >= 0.4
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    other.close()


def test_config_file_gives_the_same_run_as_the_command_line(tmp_path):
    cfg = tmp_path / "experiment.toml"
    cfg.write_text('methods = "brightness"\nmodel = "toy_net"\ndataset = "toy"\nbenchmarks = "pointing"\n'
                   'batch_size = 4\nworkers = 0\n[params.brightness]\npower = 2.0\n[dataset_options]\nn = 6\n')
    assert main(["--plugin", TOY, "run", "--config", str(cfg), "--runs-dir", str(tmp_path / "a"), "--quiet"]) == 0
    assert _run(tmp_path / "b", "--methods", "brightness", "--benchmarks", "pointing", "-p", "brightness.power=2.0",
                "-d", "n=6") == 0
    assert _run_dir(tmp_path / "a").name == _run_dir(tmp_path / "b").name
    assert _comparable(tmp_path / "a") == _comparable(tmp_path / "b")


def test_unknown_parameter_or_option_is_a_clear_error(tmp_path, capsys):
    assert _run(tmp_path, "--methods", "brightness", "-p", "brightness.sigma=3") == 2
    assert "no parameter sigma" in capsys.readouterr().out
    assert _run(tmp_path, "--methods", "brightness", "-d", "nope=1") == 2
    assert "dataset 'toy' has no option nope" in capsys.readouterr().out


def test_with_several_datasets_an_option_goes_to_those_that_take_it(tmp_path, capsys):
    base = ["--plugin", TOY, "run", "--model", "toy_net", "--runs-dir", str(tmp_path), "--workers", "0", "--quiet",
            "--methods", "brightness", "--benchmarks", "pointing", "--dataset", "toy", "--dataset", "sample"]
    assert main(base + ["--split", "val2017"]) == 2  # the bundled sample has no split, toy neither
    assert "no dataset of the run takes the option split" in capsys.readouterr().out
    assert main(base + ["-d", "n=1", "--limit", "2"]) == 0  # n is toy's option only
    rows = {t["dataset"]: t["rows"][0]["coverage"]["total"] for t in _board(tmp_path)["tables"]}
    assert rows == {"toy": 1, "sample": 2}


def test_a_benchmark_that_cannot_score_a_sample_fails_that_sample_only(tmp_path):
    assert _run(tmp_path, "--methods", "brightness", "--benchmarks", "fragile,pointing") == 0
    coverage = _rows(_board(tmp_path))["brightness"]["coverage"]
    reasons = {f["id"]: f["reason"] for f in coverage["failures"]}
    assert "benchmark 'fragile' could not score it: ValueError: unreadable ground truth" in reasons["toy006"]
    assert coverage["scored"] == 6 and coverage["failed"] == 4
    con = sqlite3.connect(tmp_path / "store.sqlite")
    n = con.execute("SELECT COUNT(*) FROM records WHERE benchmark='fragile'").fetchone()[0]
    assert n == 6  # the other samples of its batch were scored
    md = (_run_dir(tmp_path) / "leaderboard.md").read_text()
    assert "| fragile |" in md.splitlines()[4]  # a plugin benchmark's column is on the leaderboard
    assert "fragile" in (_run_dir(tmp_path) / "leaderboard.csv").read_text().splitlines()[0]


def _records(runs: Path, method: str, benchmark: str, run_id: str | None = None) -> dict[str, dict]:
    con = sqlite3.connect(runs / "store.sqlite")
    rows = con.execute("SELECT sample_id, record FROM records WHERE method=? AND benchmark=? AND run_id LIKE ?",
                       (method, benchmark, run_id or "%")).fetchall()
    con.close()
    return {sid: json.loads(r) for sid, r in rows}


def test_maps_reach_benchmarks_and_cache_at_their_own_resolution(tmp_path):
    assert _run(tmp_path, "--methods", "coarse,brightness", "--benchmarks", "shape_probe,pointing",
                "--cache-dtype", "float32") == 0
    for method, shape in (("coarse", (4, 4)), ("brightness", (32, 32))):
        recs = _records(tmp_path, method, "shape_probe")
        assert len(recs) == 7 and {(r["h"], r["w"]) for r in recs.values()} == {shape}
        (folder,) = [p for p in (tmp_path / "cache" / VERSION).rglob(f"{method}-*") if p.is_dir()]
        for f in folder.glob("*.npz"):
            with np.load(f) as z:
                assert z["maps"].shape[1:] == shape
    md = (_run_dir(tmp_path) / "leaderboard.md").read_text()
    assert "probe: the map as the method returned it, summed" in md  # the protocol notes


def test_a_view_is_made_from_the_original_image_before_the_resize(tmp_path):
    from saliency_bench.registry import load_plugin_file

    load_plugin_file(TOY)
    ToyDataset = sys.modules[next(m for m in sys.modules if m.startswith("saliency_bench_plugin_toy"))].ToyDataset
    assert _run(tmp_path, "--methods", "from_view", "--benchmarks", "shape_probe", "--cache-dtype", "float32") == 0
    recs = _records(tmp_path, "from_view", "shape_probe")
    original = np.asarray(ToyDataset().load(0).image, dtype=np.float64)[:32, :32]
    expected = ((original / 255 - 0.5) / 0.25).mean(axis=2).sum()  # the toy model's preprocessing
    assert recs["toy000"]["sum"] == pytest.approx(expected, rel=1e-5)
    assert (recs["toy000"]["h"], recs["toy000"]["w"]) == (32, 32)


def test_scores_do_not_depend_on_the_cache_dtype_but_a_float16_rescoring_says_so(tmp_path):
    args = ("--methods", "near_tie", "--benchmarks", "pointing,shape_probe")
    assert _run(tmp_path / "f16", *args, "--cache-dtype", "float16") == 0
    assert _run(tmp_path / "f32", *args, "--cache-dtype", "float32") == 0
    assert _comparable(tmp_path / "f16") == _comparable(tmp_path / "f32")
    first = _run_dir(tmp_path / "f16").name
    points = {(r["x"], r["y"]) for r in _records(tmp_path / "f16", "near_tie", "pointing").values()}
    assert points == {(4.5, 3.0)}  # the strict maximum near the top-left (map resized to 48x64)
    sums = {r["sum"] for r in _records(tmp_path / "f16", "near_tie", "shape_probe").values()}
    assert sums == {float(np.float32(1.0) + np.float32(1 - 1e-5))}  # as computed, not as cached
    # Another run (other benchmarks) re-scores the float16 cache, where the two maxima became
    # equal, and says that its records came from the lossy cache.
    assert _run(tmp_path / "f16", "--methods", "near_tie", "--benchmarks", "shape_probe") == 0
    (second,) = [p for p in (tmp_path / "f16").iterdir() if p.name.startswith("run-") and p.name != first]
    sums = {r["sum"] for r in _records(tmp_path / "f16", "near_tie", "shape_probe", second.name).values()}
    assert sums == {2.0}
    board = json.loads((second / "leaderboard.json").read_text())
    assert _rows(board)["near_tie"]["coverage"]["diagnostics"]["rescored_from_float16_cache"] == {"true": 7,
                                                                                                 "false": 0}


def test_benchmark_options_reach_the_benchmark_and_unknown_ones_are_errors(tmp_path, capsys):
    assert _run(tmp_path / "a", "--methods", "brightness", "--benchmarks", "shape_probe") == 0
    assert _run(tmp_path / "b", "--methods", "brightness", "--benchmarks", "shape_probe", "-B", "shape_probe.scale=2") == 0
    a, b = _records(tmp_path / "a", "brightness", "shape_probe"), _records(tmp_path / "b", "brightness", "shape_probe")
    assert {k: 2 * v["sum"] for k, v in a.items()} == pytest.approx({k: v["sum"] for k, v in b.items()})
    assert _run_dir(tmp_path / "a").name != _run_dir(tmp_path / "b").name
    assert "benchmark options: shape_probe(scale=2)" in (_run_dir(tmp_path / "b") / "leaderboard.md").read_text()
    capsys.readouterr()
    assert _run(tmp_path / "c", "--methods", "brightness", "--benchmarks", "shape_probe", "-B", "shape_probe.nope=1") == 2
    assert "benchmark 'shape_probe' has no option nope; it takes: scale=1.0" in capsys.readouterr().out


def test_an_interrupted_run_can_be_summarised_from_its_records(tmp_path, capsys):
    assert _run(tmp_path, "--methods", "brightness,coarse", "--benchmarks", "pointing,localization") == 0
    run_dir = _run_dir(tmp_path)
    full = _rows(_board(tmp_path))
    # As a run killed before its summaries: no metrics, never finished, and half its samples.
    con = sqlite3.connect(tmp_path / "store.sqlite")
    con.execute("DELETE FROM metrics")
    con.execute("UPDATE runs SET finished = NULL")
    con.execute("DELETE FROM outcomes WHERE method='coarse' AND sample_id > 'toy004'")
    con.execute("DELETE FROM records WHERE method='coarse' AND sample_id > 'toy004'")
    con.commit()
    con.close()
    (run_dir / "leaderboard.json").unlink()
    assert main(["--plugin", TOY, "leaderboard", str(run_dir), "--summarize"]) == 0
    rows = _rows(_board(tmp_path))
    assert rows["brightness"]["pointing_all"] == full["brightness"]["pointing_all"]
    assert rows["brightness"]["loc_error_mean"] == full["brightness"]["loc_error_mean"]
    assert rows["coarse"]["coverage"]["total"] == 5 and full["coarse"]["coverage"]["total"] == 10
    assert "UNFINISHED run" in (run_dir / "leaderboard.md").read_text()


def test_a_method_that_fails_on_every_sample_leaves_the_leaderboard_whole(tmp_path):
    assert _run(tmp_path, "--methods", "always_raises,brightness", "--benchmarks", "pointing,localization") == 0
    rows = _rows(_board(tmp_path))
    assert rows["always_raises"]["coverage"]["scored"] == 0 and rows["always_raises"]["coverage"]["failed"] == 10
    assert rows["always_raises"]["loc_error_mean"]["value"] is None
    assert rows["brightness"]["loc_error_mean"]["value"] is not None
    assert "| always_raises |" in (_run_dir(tmp_path) / "leaderboard.md").read_text()


def test_the_float16_cache_rounds_as_numpy_does_bit_for_bit():
    """The cache's float16 conversion (torch's) against NumPy's ``nan_to_num(a).astype(float16)``
    on every kind of float32: random bit patterns over all exponents, float16's halfway cases
    (ties to even), its subnormals and overflow, NaN, infinities and signed zeros."""
    from saliency_bench.cache import to_float16

    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    halves = np.arange(0, 2**16, dtype=np.uint32)
    f16 = halves.astype(np.uint16).view(np.float16).astype(np.float32)
    finite = np.isfinite(f16)
    nxt = np.nextafter(f16[finite][:-1], np.float32(np.inf))
    mids = ((f16[finite][:-1].astype(np.float64) + f16[finite][1:].astype(np.float64)) / 2).astype(np.float32)
    a = np.concatenate([bits.view(np.float32), f16, mids, nxt, np.nextafter(mids, np.float32(0)),
                        np.float32([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 65504, 65520, 65519.99, 1e-8,
                                    -6e-8, 3e-8, 2.9802322e-08])])
    with np.errstate(over="ignore"):
        expected = np.nan_to_num(a).astype(np.float16)
    got = to_float16(a)
    assert got.dtype == np.float16
    assert np.array_equal(got.reshape(-1).view(np.uint16), expected.view(np.uint16))


def test_the_cache_writes_its_files_off_the_caller_s_thread_and_reads_wait_for_them(tmp_path, monkeypatch):
    """put returns before its file is written (a thread writes it); reading those maps back, by the
    same cache or a new one, waits for the write; the file holds what NumPy's procedure gives
    (peak division, nan_to_num, float16); a write that fails is raised by the next wait."""
    import threading

    from saliency_bench import cache as cache_mod

    rng = np.random.default_rng(3)
    maps = rng.standard_normal((3, 5, 7)).astype(np.float32)
    maps[1, 2, 3] = np.nan
    maps[2] *= 0
    gate = threading.Event()
    savez = np.savez

    def slow_savez(*args, **kwargs):
        gate.wait(10)
        return savez(*args, **kwargs)

    monkeypatch.setattr(cache_mod.np, "savez", slow_savez)
    c = cache_mod.HeatmapCache(tmp_path, "m", "d", "x")
    c.get_many([])  # the index exists: put updates it
    c.put(["a", "b", "c"], maps)
    assert not list(c.dir.glob("*.npz"))  # not written yet: the writer waits at the gate
    threading.Timer(0.3, gate.set).start()
    got = c.get_many(["a", "b", "c"])  # waits for the write
    peak = np.abs(maps).reshape(3, -1).max(axis=1)
    scale = np.where(np.isfinite(peak) & (peak > 0), peak, 1).astype(np.float32)
    with np.errstate(invalid="ignore"):
        want = np.nan_to_num(maps / scale[:, None, None]).astype(np.float16)
    for i, sid in enumerate("abc"):
        assert np.array_equal(got[sid], want[i].astype(np.float32) * scale[i])
    assert cache_mod.HeatmapCache(tmp_path, "m", "d", "x").get_many(["b"]).keys() == {"b"}

    def broken(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(cache_mod.np, "savez", broken)
    c.put(["d"], maps[:1])
    with pytest.raises(OSError, match="no space left"):
        cache_mod.wait_for_writes()
    cache_mod.wait_for_writes()  # said once


def test_a_loader_batch_sends_its_inputs_as_one_tensor_and_gives_each_item_its_own():
    """``execute.Batch`` (the loader's collate) through a real DataLoader worker: the items'
    inputs arrive as one channels-last tensor; unpacked, each item has its own input again,
    items that failed to load have none, and a batch of some of them is stacked afresh."""
    import torch

    from saliency_bench.contracts import Sample
    from saliency_bench.execute import Batch, Item, _collate

    rng = np.random.default_rng(5)
    pixels = [None if k in (1, 4) else torch.from_numpy(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).permute(2, 0, 1)
              for k in range(6)]

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, k):
            s = Sample(id=str(k), image=None, size=(9, 11), targets={}, category="c",
                       error=None if pixels[k] is not None else "cannot decode")
            return Item(k, s, None if pixels[k] is None else pixels[k].clone(), {})

    for workers in (0, 1):
        (loaded,) = list(torch.utils.data.DataLoader(Items(), batch_size=6, num_workers=workers, collate_fn=_collate))
        assert isinstance(loaded, Batch) and loaded.rows == [0, 2, 3, 5]
        assert loaded.images.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(loaded.images, torch.stack([pixels[k] for k in (0, 2, 3, 5)]))
        items = loaded.unpack()
        assert [it.index for it in items] == list(range(6))
        for k, it in enumerate(items):
            assert (it.x is None) == (pixels[k] is None)
            if it.x is not None:
                assert torch.equal(it.x, pixels[k])
        assert loaded.inputs([0, 2, 3, 5]) is loaded.images
        assert torch.equal(loaded.inputs([2, 5]), torch.stack([pixels[2], pixels[5]]))


def test_the_harness_own_tensor_work_runs_on_one_thread_and_the_method_keeps_torchs(monkeypatch):
    """The output check and the cache's float16 conversion run on one intra-op thread (a parallel
    operation in the main process waits for threads that the loader's processes keep off the
    cores), as does the guard's fingerprint (a compiled loop on the calling thread); the thread
    count is put back after each, so the method, called between them, runs with the count torch
    chose, and the guard sees no change of process state."""
    import torch

    from saliency_bench import cache
    from saliency_bench.contracts import method as method_contract
    from saliency_bench.execute import call_method
    from saliency_bench.isolation import Guard
    from saliency_bench.ops.checksum import Checksums
    from saliency_bench.registry import get_method
    from saliency_bench.targets import Targets
    from small_nets import inputs40, small_model

    seen: dict[str, list[int]] = {}

    def spy(name, fn):
        def wrapped(*a, **k):
            seen.setdefault(name, []).append(torch.get_num_threads())
            return fn(*a, **k)
        return wrapped

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name in ("nan_to_num", "isfinite"):
            monkeypatch.setattr(torch, name, spy(name, getattr(torch, name)))
        fingerprints = []
        monkeypatch.setattr(Checksums, "__call__", lambda self, call=Checksums.__call__: fingerprints.append(
            torch.get_num_threads()) or call(self))
        model = small_model()
        guard = Guard(model)
        base = get_method("gradient")
        probe = method_contract.Method(**{**base.__dict__, "fn": spy("method", base.fn)})
        x = inputs40()
        res = call_method(probe, model, x, Targets([[0], [1], [2]], device=x.device), {}, guard)
        assert all(o is not None for o in res.outputs), res.reasons
        f16 = cache.to_float16(np.stack(res.outputs))
        assert f16.dtype == np.float16
        assert seen["method"] == [2]  # the method: torch's count
        for name in ("nan_to_num", "isfinite"):  # the harness: one thread each time
            assert seen[name] and set(seen[name]) == {1}, (name, seen[name])
        assert len(fingerprints) >= 2  # at the guard's start and after the call
        assert torch.get_num_threads() == 2
        assert guard.verify() is None
    finally:
        torch.set_num_threads(before)


def test_a_call_s_peak_memory_leaves_out_what_was_allocated_before_it(monkeypatch):
    """The allocator's counters, simulated: a call that allocates 300 bytes at most and leaves 100
    behind has a peak of 300, and so does the next one (the leak is not its)."""
    import torch

    from saliency_bench import timing

    mem = {"allocated": 5000, "peak": 5000}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: mem.update(peak=mem["allocated"]))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: mem["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: mem["peak"])

    def call():
        mem["peak"] = max(mem["peak"], mem["allocated"] + 300)
        mem["allocated"] += 100

    device = torch.device("cuda", 0)
    assert [timing.timed(call, device)[2] for _ in range(3)] == [300, 300, 300]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_a_leak_on_the_device_does_not_inflate_the_next_call_s_peak():
    import torch

    from saliency_bench import timing

    device = torch.device("cuda")
    kept = []

    def leaky():
        kept.append(torch.empty(64 << 20, dtype=torch.uint8, device=device))  # 64 MiB left behind

    first = timing.timed(leaky, device)[2]
    second = timing.timed(leaky, device)[2]
    assert first >= 64 << 20 and second == first


def test_an_adapter_that_keeps_its_samples_gets_them_back_unchanged(tmp_path):
    """The loader drops each decoded image from the sample it sends on: from its own copy. An
    adapter that hands out the same Sample object at every load (a cache) keeps its images, so
    the gallery (which loads samples again) and a second run in the same process work, with the
    same records."""
    plugins = Path(__file__).parent / "plugins"
    args = ["--plugin", str(plugins / "toy.py"), "--plugin", str(plugins / "cached_samples.py"), "run",
            "--model", "toy_net", "--dataset", "cached_toy", "--workers", "0", "--batch-size", "4", "--quiet",
            "--methods", "center,brightness", "--benchmarks", "pointing"]
    rows = []
    for name in ("first", "second"):
        assert main([*args, "--runs-dir", str(tmp_path / name)]) == 0
        con = sqlite3.connect(tmp_path / name / "store.sqlite")
        rows.append(con.execute("SELECT method, sample_id, record FROM records ORDER BY 1, 2").fetchall())
        assert con.execute("SELECT COUNT(*) FROM outcomes WHERE ok = 0").fetchone() == (0,)
        con.close()
    assert len(rows[0]) == 12 and rows[0] == rows[1]


def test_benchmark_samples_are_copies_with_read_only_arrays():
    from saliency_bench.contracts import Sample
    from saliency_bench.execute import benchmark_samples

    s = Sample(id="a", image=None, size=(4, 4), targets={"imagenet": (1,)}, category="c",
               boxes=np.zeros((1, 4), np.float32), mask=np.zeros((4, 4), bool), flags={"difficult": True},
               keypoints=[("eye", 1.0, 2.0)])
    (c,) = benchmark_samples([s])
    with pytest.raises(ValueError, match="read-only"):
        c.boxes[0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        c.mask[:] = True
    c.flags["difficult"] = False
    c.targets["imagenet"] = (2,)
    c.keypoints.append(("foot", 0.0, 0.0))
    c.boxes = c.boxes * 2
    assert s.flags == {"difficult": True} and s.targets == {"imagenet": (1,)} and len(s.keypoints) == 1
    assert s.boxes.flags.writeable and s.mask.flags.writeable and not s.mask.any()

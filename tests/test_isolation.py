"""One careless method never changes another's numbers (issue 21), through ``saliency-bench run``.

The careless methods of tests/plugins/careless.py change the model or the process state and
return a legal map. A run with all of them between gradient and Grad-CAM on the bundled sample
must give gradient and Grad-CAM the very records of a run without them; each careless method
fails, with a reason that names what it changed; its maps are neither scored nor cached.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saliency_bench.cache import PROVENANCE, VERSION
from saliency_bench.cli import main
from saliency_bench.registry import load_plugin_file

from interrupt import start_and_wait

PLUGINS = Path(__file__).parent / "plugins"
CARELESS = str(PLUGINS / "careless.py")
TOY = str(PLUGINS / "toy.py")
load_plugin_file(CARELESS)
_CARELESS = next(m for n, m in sys.modules.items() if n.startswith("saliency_bench_plugin_careless"))
CHANGES, HARMLESS = _CARELESS.CHANGES, _CARELESS.HARMLESS
OFFENDERS = sorted(CHANGES)
VICTIMS = ("gradient", "grad_cam")
SAMPLE = ["--limit", "4", "--batch-size", "2", "--workers", "0", "--quiet", "--benchmarks", "pointing",
          "--cache-dtype", "float32"]


def _run(runs: Path, methods: str, *extra: str, plugins=(CARELESS,)) -> int:
    pl = [a for p in plugins for a in ("--plugin", p)]
    return main([*pl, "run", "--methods", methods, "--runs-dir", str(runs), *SAMPLE, *extra])


def _rows(runs: Path, methods=VICTIMS, table: str = "records") -> list:
    con = sqlite3.connect(runs / "store.sqlite")
    marks = ",".join("?" * len(methods))
    if table == "records":
        rows = con.execute(f"SELECT model, dataset, method, benchmark, sample_id, record FROM records "
                           f"WHERE method IN ({marks}) ORDER BY 1,2,3,4,5", methods).fetchall()
    else:
        rows = con.execute(f"SELECT model, dataset, method, sample_id, ok, reason, info FROM outcomes "
                           f"WHERE method IN ({marks}) ORDER BY 1,2,3,4", methods).fetchall()
    con.close()
    return rows


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    runs = tmp_path_factory.mktemp("alone")
    assert _run(runs, ",".join(VICTIMS), plugins=()) == 0
    return runs


@pytest.fixture(scope="module")
def careless_run(tmp_path_factory):
    """gradient, every careless method and those that write into their inputs, Grad-CAM: two
    batches, so each victim runs after them (Grad-CAM in the same batch, gradient in the next)."""
    runs = tmp_path_factory.mktemp("careless")
    assert _run(runs, ",".join(["gradient", *OFFENDERS, *HARMLESS, "grad_cam"])) == 0
    return runs


def test_other_methods_score_exactly_as_alone(alone, careless_run):
    assert _rows(alone)  # the victims were scored
    assert _rows(careless_run) == _rows(alone)
    assert _rows(careless_run, table="outcomes") == _rows(alone, table="outcomes")


@pytest.mark.parametrize("offender", OFFENDERS)
def test_the_offender_fails_with_what_it_changed(careless_run, offender):
    outcomes = _rows(careless_run, (offender,), table="outcomes")
    assert len(outcomes) == 4
    for *_, ok, reason, _info in outcomes:
        if reason.startswith("not evaluable"):
            continue
        assert not ok and reason.startswith(f"method '{offender}' ")
        assert CHANGES[offender] in reason, reason
    assert _rows(careless_run, (offender,)) == []  # nothing scored
    folders = [p for p in (careless_run / "cache" / VERSION).rglob(f"{offender}*") if p.is_dir()]
    assert folders and not [g for f in folders for g in f.glob("*.npz")]  # nothing cached


def test_a_method_may_write_into_its_inputs(careless_run):
    """Each method gets copies of the batch's inputs and targets: writing into them (in place,
    through ``.data``) is its own business, fails nothing, and moves no other method's numbers
    (test_other_methods_score_exactly_as_alone)."""
    rows = _rows(careless_run, HARMLESS, table="outcomes")
    assert len(rows) == 4 * len(HARMLESS) and all(r[4] == 1 for r in rows), rows


def test_a_clean_run_after_a_faulty_one_gives_the_clean_numbers(alone, tmp_path):
    """A faulty run, then the victims alone in the same runs directory: they read their maps
    from the cache, and the numbers are those of a clean run. A cache of the earlier layout, or a
    file whose provenance cannot be checked, holding maps of a changed model, is not read."""
    assert _run(tmp_path, "scales_weight,train_mode,forward_hook,gradient,grad_cam") == 0
    cache = tmp_path / "cache" / VERSION
    # Plant maps of a changed model where an older version would have left them: in v2 and v3
    # copies of the cache, files of the old provenance among today's, and files without
    # provenance (sorted last: they would win if read).
    for f in sorted(cache.rglob("*.npz")):
        with np.load(f) as z:
            assert str(z["provenance"]) == PROVENANCE
            scrambled = dict(ids=z["ids"], maps=z["maps"][..., ::-1] * 3 + 1, scale=z["scale"])
        for version in ("v2", "v3"):
            old = tmp_path / "cache" / version / f.relative_to(cache)
            old.parent.mkdir(parents=True, exist_ok=True)
            np.savez(old, **scrambled)
        np.savez(f.with_name("zz-unknown.npz"), **scrambled)
        np.savez(f.with_name("zz-isolation-1.npz"), **scrambled, provenance=np.array(
            "model and process state verified unchanged after the call (isolation 1)"))
    assert _run(tmp_path, ",".join(VICTIMS), plugins=()) == 0
    assert _rows(tmp_path, table="records") and _records_of_last_run(tmp_path) == _records_of_last_run(alone)


def _records_of_last_run(runs: Path) -> list:
    con = sqlite3.connect(runs / "store.sqlite")
    (run_id,) = con.execute("SELECT run_id FROM runs ORDER BY started DESC LIMIT 1").fetchone()
    rows = con.execute("SELECT method, benchmark, sample_id, record FROM records WHERE run_id=? ORDER BY 1,2,3",
                       (run_id,)).fetchall()
    con.close()
    return rows


@pytest.mark.parametrize("old", ["v2", "v3"])
def test_an_old_cache_is_named_not_read(tmp_path, capsys, old):
    (tmp_path / "cache" / old).mkdir(parents=True)
    assert _run(tmp_path, "gradient", "--limit", "2", plugins=()) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{old} was written by an earlier version" in out and "it is not read" in out
    assert (tmp_path / "cache" / VERSION).is_dir() and VERSION not in ("v2", "v3")


# --------------------------------------------------------------------------------------------
# Benchmarks with the model in the loop (the toy model: a hundred passes per sample are cheap)
# --------------------------------------------------------------------------------------------
def _toy(runs: Path, methods: str, benchmarks: str) -> int:
    return main(["--plugin", TOY, "--plugin", CARELESS, "run", "--model", "toy_net", "--dataset", "toy",
                 "--runs-dir", str(runs), "--workers", "0", "--batch-size", "4", "--quiet", "--methods", methods,
                 "--benchmarks", benchmarks])


def test_model_in_the_loop_benchmarks_score_on_the_pristine_model(tmp_path):
    """The deletion game and RISE deletion after careless methods and after a careless
    benchmark give the records they give alone; the careless benchmark fails, named."""
    assert _toy(tmp_path / "alone", "brightness", "deletion_game,deletion") == 0
    assert _toy(tmp_path / "mixed", "scales_weight_data,train_mode,brightness,forward_hook",
                "careless_query,deletion_game,deletion") == 0
    def untimed(rows):  # the model query's seconds are a clock reading
        return [(*r[:5], {k: v for k, v in json.loads(r[5]).items() if k != "_probe"}) for r in rows]

    want = untimed(_rows(tmp_path / "alone", ("brightness",)))
    got = untimed(r for r in _rows(tmp_path / "mixed", ("brightness",)) if r[3] != "careless_query")
    assert want and got == want
    con = sqlite3.connect(tmp_path / "mixed" / "store.sqlite")
    reasons = {r for (r,) in con.execute("SELECT reason FROM outcomes WHERE method='brightness' AND ok=0")}
    con.close()
    assert any(r.startswith("benchmark 'careless_query' changed the model: module (the network) switched to "
                            "train mode") for r in reasons), reasons


@pytest.mark.parametrize("scoring_workers", ["0", "1"])
def test_a_benchmark_that_changes_the_process_while_scoring_fails_itself_not_the_next_method(tmp_path, scoring_workers):
    """A benchmark is plugin code as much as a method: one that leaves torch's default dtype at
    float64 while scoring fails on those samples, with what it changed, and the process is put
    right: in the main process before the batch's next method runs, so that no method is failed
    for the change (before, the batch's next method was); in a scoring worker before the next
    benchmark scores there. The methods' pointing records are those of a run without it."""
    def run(runs: Path, benchmarks: str) -> int:
        return main(["--plugin", TOY, "--plugin", CARELESS, "run", "--model", "toy_net", "--dataset", "toy",
                     "--runs-dir", str(runs), "--workers", "0", "--scoring-workers", scoring_workers, "--batch-size", "4",
                     "--quiet", "--methods", "brightness,plain_brightness", "--benchmarks", benchmarks])

    assert run(tmp_path / "alone", "pointing") == 0
    assert run(tmp_path / "after", "leaves_float64,pointing") == 0
    methods = ("brightness", "plain_brightness")
    assert [r for r in _rows(tmp_path / "after", methods) if r[3] == "pointing"] == _rows(tmp_path / "alone", methods)
    assert not [r for r in _rows(tmp_path / "after", methods) if r[3] == "leaves_float64"]  # nothing it scored counts
    alone = {r[:4]: r[5] for r in _rows(tmp_path / "alone", methods, table="outcomes")}
    after = {r[:4]: r[5] for r in _rows(tmp_path / "after", methods, table="outcomes")}
    assert after.keys() == alone.keys()
    blamed = {k: why for k, why in after.items() if why != alone[k]}
    assert {k[2] for k in blamed} == set(methods)  # both methods' maps went through it, neither is blamed
    assert all(why.startswith("benchmark 'leaves_float64' changed the process state: default dtype left at "
                              "torch.float64") for why in blamed.values()), blamed


def test_between_batches_only_a_run_of_the_harness_s_own_code_goes_unchecked(tmp_path, monkeypatch):
    """The check before a batch's first method is skipped only where nothing but saliency_bench's
    own code ran since the last method call was checked: its own dataset, model and benchmarks
    (the first batch of a pass is checked all the same). A plugin benchmark, or a plugin dataset,
    brings the check back for every batch."""
    from saliency_bench.runner import Runner

    seen: list[str] = []
    verify = Runner._verify_outside_methods
    monkeypatch.setattr(Runner, "_verify_outside_methods", lambda self, where: (seen.append(where), verify(self, where)))

    def loading(*args: str) -> int:
        seen.clear()
        assert main(["--plugin", TOY, "--plugin", CARELESS, "run", "--runs-dir", str(tmp_path / str(len(args)) / args[0]),
                     "--workers", "0", "--batch-size", "2", "--quiet", *args]) == 0
        return seen.count("loading the batch")

    own = ("--methods", "center,plain_brightness", "--benchmarks", "pointing", "--limit", "6")
    assert loading(*own) == 1  # three batches: the first one checked
    assert loading(*own[:3], "leaves_float64,pointing", *own[4:]) == 3
    assert loading("--model", "toy_net", "--dataset", "toy", "--methods", "brightness", "--benchmarks", "pointing",
                   "--limit", "6") == 3


def test_a_benchmark_writing_into_its_view_changes_no_other_method_s_scores(tmp_path):
    """A benchmark's view is made once per batch and handed to it for each method's maps: a copy
    each time, so that zeroing it after the first method leaves the second's as made."""
    def scores(rows):
        return [(r[2], r[4], {k: v for k, v in json.loads(r[5]).items() if k in ("view_sum", "map_sum")})
                for r in rows if r[3] == "writes_its_view"]

    assert _toy(tmp_path / "alone", "brightness", "writes_its_view") == 0
    assert _toy(tmp_path / "after", "writes_input,brightness", "writes_its_view") == 0
    want = scores(_rows(tmp_path / "alone", ("brightness",)))
    assert want and all(s["view_sum"] != 0 for _, _, s in want)  # (a zeroed view sums to 0)
    assert scores(_rows(tmp_path / "after", ("brightness",))) == want


@pytest.mark.parametrize("scoring_workers", ["0", "1"])
def test_a_benchmark_writing_into_samples_or_maps_changes_no_other_scores(tmp_path, scoring_workers):
    """Benchmarks get their own copies of the samples, with read-only arrays, and of the maps: in
    this process and in a scoring worker alike. Clearing a mask in place fails that benchmark on
    each sample, loudly; replacing a mask or writing into the maps is the benchmark's own business;
    the pointing game, scored after them, and the cache are as without them."""
    def run(runs, benchmarks):
        return main(["--plugin", TOY, "--plugin", CARELESS, "run", "--model", "toy_net", "--dataset", "toy",
                     "--runs-dir", str(runs), "--workers", "0", "--scoring-workers", scoring_workers,
                     "--batch-size", "4", "--quiet", "--methods", "brightness,center", "--benchmarks", benchmarks,
                     "--cache-dtype", "float32"])

    assert run(tmp_path / "alone", "pointing") == 0
    assert run(tmp_path / "after", "zeroes_mask,rebinds_mask,writes_its_maps,pointing") == 0
    pointing = [r for r in _rows(tmp_path / "after", ("brightness", "center")) if r[3] == "pointing"]
    assert pointing == _rows(tmp_path / "alone", ("brightness", "center"))
    con = sqlite3.connect(tmp_path / "after" / "store.sqlite")
    reasons = {r for (r,) in con.execute("SELECT reason FROM outcomes WHERE ok=0")}
    scored = {b: n for b, n in con.execute("SELECT benchmark, COUNT(*) FROM records GROUP BY benchmark")}
    con.close()
    assert any("benchmark 'zeroes_mask' could not score it" in r and "read-only" in r for r in reasons), reasons
    assert scored.get("rebinds_mask") == scored.get("writes_its_maps") == scored["pointing"] > 0
    assert "zeroes_mask" not in scored
    for f in (tmp_path / "after" / "cache").rglob("*.npz"):
        twin = tmp_path / "alone" / f.relative_to(tmp_path / "after")
        with np.load(f) as a, np.load(twin) as b:
            assert np.array_equal(a["maps"], b["maps"]), f.name


def test_a_method_reusing_its_output_buffer_caches_the_maps_it_returned(tmp_path):
    """With a scoring worker the cache is written after the next call has run: the maps of a
    method that rewrites one output buffer at every call must be copies taken at its return."""
    assert main(["--plugin", TOY, "--plugin", CARELESS, "run", "--model", "toy_net", "--dataset", "toy",
                 "--runs-dir", str(tmp_path), "--workers", "0", "--scoring-workers", "1", "--batch-size", "2",
                 "--quiet", "--methods", "reuses_buffer,plain_brightness", "--benchmarks", "pointing",
                 "--cache-dtype", "float32"]) == 0

    def maps(method):
        out = {}
        for f in (tmp_path / "cache").rglob(f"{method}-*/*.npz"):
            with np.load(f) as z:
                out.update(zip(z["ids"].tolist(), z["maps"] * z["scale"][:, None, None]))
        return out

    got, want = maps("reuses_buffer"), maps("plain_brightness")
    assert len(want) == 7 and sorted(got) == sorted(want)
    assert all(np.array_equal(got[k], want[k]) for k in want)


# --------------------------------------------------------------------------------------------
# Ctrl-C: one line, exit 130, and the command it prints resumes to the same records
# --------------------------------------------------------------------------------------------
def test_ctrl_c_prints_one_line_exits_130_and_resumes_to_identical_records(tmp_path):
    args = ["run", "--model", "toy_net", "--dataset", "toy", "--workers", "0", "--batch-size", "2",
            "--methods", "sleepy,brightness", "--benchmarks", "pointing,localization", "-d", "n=16"]
    assert main(["--plugin", TOY, *args, "--runs-dir", str(tmp_path / "straight"), "--quiet"]) == 0
    runs = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "saliency_bench", "--plugin", TOY, *args, "--runs-dir", str(runs), "--quiet"]
    proc, _ = start_and_wait(cmd, runs / "store.sqlite", "sleepy", 4, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, out + err
    line = lines[0]
    assert line.startswith("interrupted: run run-") and "outcomes kept in" in line
    resume = line.split("resume with: ", 1)[1]
    words = shlex.split(resume)
    assert words[0] == "saliency-bench" and words[1:] == cmd[3:]
    assert main(words[1:]) == 0
    assert _rows(runs, ("sleepy", "brightness")) == _rows(tmp_path / "straight", ("sleepy", "brightness"))
    assert _rows(runs, ("sleepy", "brightness"), "outcomes") == _rows(tmp_path / "straight", ("sleepy", "brightness"),
                                                                       "outcomes")

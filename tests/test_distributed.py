"""One run across several processes with torchrun (gloo on the CPU): same leaderboard, resumable."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOY = str(Path(__file__).parent / "plugins" / "toy.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(runs: Path, args: list[str], nproc: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "--max_restarts", "0",
           "-m", "saliency_bench", "--plugin", TOY, "run", "--runs-dir", str(runs), "--workers", "0", "--quiet", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _results(runs: Path) -> tuple:
    con = sqlite3.connect(runs / "store.sqlite")
    out = (con.execute("SELECT model, dataset, method, benchmark, sample_id, record FROM records ORDER BY 1,2,3,4,5").fetchall(),
           con.execute("SELECT model, dataset, method, sample_id, ok, reason FROM outcomes ORDER BY 1,2,3,4").fetchall(),
           con.execute("SELECT model, dataset, method, benchmark, metrics FROM metrics WHERE benchmark != 'runtime' "
                       "AND method != '__model__' ORDER BY 1,2,3,4").fetchall())
    con.close()
    return out


SAMPLE_ARGS = ["--methods", "gradient,center,grad_cam", "--dataset", "sample", "--limit", "12",
               "--benchmarks", "pointing,localization,runtime", "--batch-size", "4"]


def _single(runs: Path, args: list[str]) -> None:
    """The same run in one process, with the ranks' thread count (CPU kernels' float results
    depend on how many threads split a reduction)."""
    cmd = [sys.executable, "-m", "saliency_bench", "--plugin", TOY, "run", "--runs-dir", str(runs), "--workers", "0",
           "--quiet", *args]
    done = subprocess.run(cmd, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]


def test_two_gloo_ranks_give_the_single_process_leaderboard(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    _single(single, SAMPLE_ARGS)
    proc = _torchrun(multi, SAMPLE_ARGS)
    out = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    assert _results(multi) == _results(single)
    con = sqlite3.connect(multi / "store.sqlite")
    ranks = {r for (r,) in con.execute("SELECT DISTINCT rank FROM timings")}
    meta = con.execute("SELECT meta FROM runs").fetchone()[0]
    assert ranks == {0, 1} and '"world_size": 2' in meta and '"backend": "gloo"' in meta
    (run_dir,) = [p for p in multi.iterdir() if p.name.startswith("run-")]
    assert (run_dir / "leaderboard.md").is_file() and not (run_dir / "shards").exists()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to find the rank processes")
def test_a_rank_killed_mid_run_resumes_to_the_same_results(tmp_path):
    args = ["--model", "toy_net", "--dataset", "toy", "-d", "n=24", "--methods", "sleepy,brightness",
            "--benchmarks", "pointing,localization", "--batch-size", "2"]
    straight = tmp_path / "straight"
    _single(straight, args)
    runs = tmp_path / "killed"
    proc = _torchrun(runs, args)
    deadline, done = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None:
        done = 0
        for shard in runs.glob("run-*/shards/*.sqlite"):
            try:
                con = sqlite3.connect(shard, timeout=5)
                done += con.execute("SELECT COUNT(*) FROM outcomes WHERE method='sleepy'").fetchone()[0]
                con.close()
            except sqlite3.Error:
                pass
        if done >= 4:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before a rank could be killed"
    ranks = _children(proc.pid)
    assert len(ranks) == 2
    os.kill(ranks[1], signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    rerun = _torchrun(runs, args)
    out = rerun.communicate(timeout=600)[0].decode()
    assert rerun.returncode == 0, out[-3000:]
    assert _results(runs) == _results(straight)

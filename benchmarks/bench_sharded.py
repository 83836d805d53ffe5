"""Wall time of a sharded audit: N workers (``--shard I/N`` job-array tasks, or torchrun
ranks) against one worker, the same audit into one run directory each.

Every worker is a separate ``aligndepth audit`` process with ``--threads 1`` (one torch
thread each, as a job-array task on a core of its own would run), all started together;
the wall time runs from the first start to the last exit (the last worker writes the
summary and report). The records of every sharded run are checked equal, unit for unit,
to the one-worker run's. The default audit is the organism's at small budgets (a few
minutes on one core); the ratio is ``workers`` wall ÷ one worker's, ideally ``1/N`` when
N cores are free, plus the per-process start (imports, model load) that each worker pays.

    python benchmarks/bench_sharded.py [--workers 2] [--limit 12] [--launcher shard|torchrun]
        [--device cpu|cuda]

On a GPU machine ``--launcher torchrun --device cuda`` gives one rank per GPU
(``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from aligndepth.organism.build import build_organism
from aligndepth.runs import Run


def audit_argv(organism: Path, out: Path, limit: int, device: str) -> list[str]:
    """The audit every side runs: all the experiments at small budgets."""
    return ["audit", "--base", str(organism / "base"), "--aligned", str(organism / "aligned"),
            "--data", str(organism / "data" / "harmful_pairs.jsonl"), "--limit", str(limit),
            "--k", "0", "--k", "5", "--samples", "2", "--sweep", "1.0", "--num-steps", "5",
            "--search-width", "64", "--topk", "32", "--max-prompts", str(limit),
            "--device", device, "--threads", "1", "--quiet", "--out", str(out)]


def run_workers(argvs: list[list[str]], env: dict[str, str]) -> float:
    """Starts every ``aligndepth`` command at once; the wall time until the last exits."""
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "aligndepth", *argv], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a worker failed ({proc.returncode}): {err.strip()[-2000:]}")
    return time.perf_counter() - start


def torchrun_argv(workers: int, argv: list[str]) -> list[str]:
    return ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}",
            "-m", "aligndepth", *argv]


def run_torchrun(workers: int, argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *torchrun_argv(workers, argv)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"torchrun failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def records(root: Path) -> dict[str, dict[str, Any]]:
    """Every record of the run (all shards), by experiment and unit key."""
    run = Run.load(root)
    return {f"{e}/{r['key']}": r for e in run.manifest["experiments"] for r in run.records(e)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=12, help="prompts per experiment")
    parser.add_argument("--launcher", choices=("shard", "torchrun"), default="shard")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    organism = build_organism()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one"
        times = {"1 worker": run_workers([audit_argv(organism, one, args.limit, args.device)],
                                         env)}
        many = Path(tmp) / "many"
        argv = audit_argv(organism, many, args.limit, args.device)
        label = f"{args.workers} workers ({args.launcher})"
        if args.launcher == "torchrun":
            times[label] = run_torchrun(args.workers, argv, env)
        else:
            times[label] = run_workers(
                [[*argv, "--shard", f"{i}/{args.workers}"] for i in range(args.workers)], env)
        same = records(one) == records(many)
        summary_same = (json.loads((one / "summary.json").read_text())["experiments"]
                        == json.loads((many / "summary.json").read_text())["experiments"])
    print(f"organism audit, {args.limit} prompts per experiment, {os.cpu_count()} CPU cores "
          f"({platform.machine()}), torch {torch.__version__}, device {args.device}, one "
          f"thread per worker; records equal unit for unit: {same}; summary's experiment "
          f"list equal: {summary_same}")
    print(f"{'workers':28s} {'wall s':>8s} {'ratio':>7s}")
    for name, seconds in times.items():
        print(f"{name:28s} {seconds:8.1f} {seconds / times['1 worker']:7.2f}")


if __name__ == "__main__":
    main()

"""The served-engine client's overhead: organism experiments through a local
OpenAI-compatible server against the local engine, same prompts.

The server (``tests/served_models.py`` behind ``tests/fake_openai.py``, on 127.0.0.1)
answers each completion with the same model and sampler as the local engine, one row at
a time, so the two runs give identical records; what differs is the path: HTTP, JSON,
the client's thread pool and the local stop re-check, and the server's row-at-a-time
decoding (a real server batches rows; this one does not). The ratio is therefore far
above the client's cost; the script also reports the server's own decoding time, so the
rest (HTTP, JSON, the client's pool, the stop re-check) is the client's overhead per
request. Each side runs in this process, the local engine
first, both with an empty answer cache.

    python benchmarks/bench_served.py [--limit 5] [--experiments prefill,decoding]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' server

import torch  # noqa: E402

from aligndepth.audit import AuditConfig, open_setup, run_experiments  # noqa: E402
from aligndepth.engine.served import ServedConfig  # noqa: E402
from aligndepth.models import LoadConfig  # noqa: E402
from aligndepth.organism.build import build_organism  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--experiments", default="prefill,decoding")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    from tests.fake_openai import FakeOpenAI
    from tests.served_models import ServedModels

    key = "bench-key"
    os.environ["ALIGNDEPTH_ENGINE_API_KEY"] = key
    organism = build_organism()
    base, aligned = str(organism / "base"), str(organism / "aligned")
    experiments = tuple(e.strip() for e in args.experiments.split(","))
    config = AuditConfig(experiments=experiments, limit=args.limit)
    models = ServedModels({"base": organism / "base", "aligned": organism / "aligned"})
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        local = open_setup(base, aligned, show_progress=False, load=LoadConfig(device="cpu"))
        start = time.perf_counter()
        run_experiments(local, Path(tmp) / "local", config)
        times["local engine"] = time.perf_counter() - start
        with FakeOpenAI(key, completion=models, models=models.models()) as server:
            loads = {role: LoadConfig(device="cpu", served=ServedConfig(
                url=server.url, model=role, cache_dir=str(Path(tmp) / "cache"),
                max_concurrency=args.concurrency)) for role in ("base", "aligned")}
            served = open_setup(base, aligned, show_progress=False, load=loads["base"],
                                base_load=loads["base"], aligned_load=loads["aligned"])
            start = time.perf_counter()
            run_experiments(served, Path(tmp) / "served", config)
            times["served (local server)"] = time.perf_counter() - start
            requests = server.requests
            busy = models.busy
        same = all((Path(tmp) / "local" / "records" / f"{e}.jsonl").read_text().count("\n")
                   == (Path(tmp) / "served" / "records" / f"{e}.jsonl").read_text()
                   .count("\n") for e in experiments)
    print(f"organism {', '.join(experiments)}, {args.limit} prompts, {requests} completion "
          f"requests, {platform.machine()} CPU, torch threads {torch.get_num_threads()}, "
          f"client concurrency {args.concurrency}; same record counts: {same}")
    print(f"{'engine':24s} {'seconds':>8s} {'x local':>8s}")
    for name, seconds in times.items():
        print(f"{name:24s} {seconds:8.2f} {seconds / times['local engine']:8.2f}")
    overhead = times["served (local server)"] - busy
    print(f"of the served time: {busy:.2f} s the server decoding rows one at a time (no "
          f"batching), {overhead:.2f} s everything else ({1000 * overhead / requests:.1f} ms "
          "per request: HTTP, JSON, the client's pool, stop re-check, records)")


if __name__ == "__main__":
    main()

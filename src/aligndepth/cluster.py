"""The audit's workers: one process, a ``--shard I/N`` job-array task, or a rank of
``torchrun`` / ``accelerate launch``.

A worker runs its share of the units (:mod:`aligndepth.shards`). Under torchrun each rank
takes shard RANK/WORLD_SIZE and its own device (``cuda:LOCAL_RANK`` when the models go to
CUDA and no ``--device-map`` spreads them), and joins a process group (gloo on the CPU,
nccl on CUDA) used only for barriers: rank 0 opens (or creates) the run before the
others, and renders the summary and report after the last rank is done. A job-array task
renders them when it finds the run complete (the last one to finish does);
``aligndepth report RUN`` renders a sharded run once all shards are done.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.experiment import Setup
from aligndepth.report.render import render_report
from aligndepth.run_settings import LoadConfig
from aligndepth.runs import Run
from aligndepth.shards import (
    Shard,
    ShardedRun,
    check_count,
    missing_shards,
    setup_lock,
    world,
)

log = logging.getLogger(__name__)

#: How long a rank waits at a barrier for the others (a GCG shard may run for a day).
BARRIER_TIMEOUT = timedelta(days=7)


def worker_load(load: LoadConfig, environ: Any = os.environ) -> LoadConfig:
    """``load`` with this rank's GPU under torchrun: ``cuda:LOCAL_RANK`` when the device is
    ``auto`` or ``cuda`` and CUDA is present (a ``--device-map`` or an explicit device is
    the user's placement, kept)."""
    ranks = world(environ)
    if ranks is None or load.device_map is not None or load.device not in ("auto", "cuda"):
        return load
    import torch

    if not torch.cuda.is_available():
        return load
    local = ranks[2]
    if local >= torch.cuda.device_count():
        raise AlignDepthError(f"LOCAL_RANK {local} has no GPU: this node has "
                              f"{torch.cuda.device_count()}; start one rank per GPU "
                              "(--nproc-per-node), or give --device-map for one rank per node")
    return replace(load, device=f"cuda:{local}")


def _distributed(setup: Setup) -> bool:
    """Join torchrun's process group (once) when there is one; whether there is."""
    ranks = world(os.environ)
    if ranks is None:
        return False
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        model = setup.pair.aligned.model
        device = next(model.parameters()).device if hasattr(model, "parameters") else None
        cuda = device is not None and device.type == "cuda"
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)
        log.info("rank %d of %d joined (%s)", ranks[0], ranks[1], dist.get_backend())
    return True


def _barrier() -> None:
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def open_run(setup: Setup, out: str | Path, manifest: dict[str, Any], overwrite: bool,
             shard: Shard | None) -> Run:
    """The run this worker writes: :meth:`Run.open` alone, else its shard's
    :meth:`ShardedRun.open_shard` (under torchrun, rank 0 first, then a barrier)."""
    if shard is None:
        return Run.open(out, manifest, overwrite=overwrite)
    check_count(Path(out).expanduser(), shard)
    if not _distributed(setup):
        return ShardedRun.open_shard(out, manifest, shard, overwrite=overwrite)
    if shard.index == 0:
        run = ShardedRun.open_shard(out, manifest, shard, overwrite=overwrite)
    _barrier()  # the manifest is written
    if shard.index != 0:
        run = ShardedRun.open_shard(out, manifest, shard, overwrite=False)
    return run


def finish_run(run: Run) -> dict[str, Any]:
    """Render the run when this worker is the one to: the summary (see the module);
    a worker that leaves it to another returns ``{"shard": "I/N", "missing": ...}``
    (``missing``: :func:`~aligndepth.shards.missing_shards`, ``None`` when complete)."""
    if not isinstance(run, ShardedRun):
        return render_report(run.path)
    shard = str(run.shard)
    if world(os.environ) is not None:
        import torch.distributed as dist

        _barrier()  # every rank is done
        summary = render_report(run.path) if run.shard.index == 0 else {
            "shard": shard, "missing": None}
        dist.destroy_process_group()
        return summary
    missing = missing_shards(Run.load(run.path))
    if missing is not None:
        log.warning("shard %s is done; the run waits for %s", shard, missing)
        return {"shard": shard, "missing": missing}
    with setup_lock(run.path):  # the last workers may finish together
        return render_report(run.path)

"""The CPU kernels an organism build runs on, pinned so that a seed gives the same bits on
any x86-64 machine.

torch picks its CPU kernels from the processor: ATen's vectorised loops (AVX2 or AVX-512),
MKL's matrix products and oneDNN's primitives each sum floats in a different order on an
AVX-512 machine than on an AVX2 one, so the same seed, the same thread count and the same
torch build train a different organism on another CPU. The three libraries read their
kernel set from the environment once, when they start (``ATEN_CPU_CAPABILITY``,
``MKL_CBWR``, ``ONEDNN_MAX_CPU_ISA``), so a pinned build runs in a child process started
with those variables; a process already started with them builds in place.

Every x86-64 CPU since 2013 runs AVX2, and an AVX2 build costs about as much as the
machine's own kernels on a model the organism's size. A CPU without AVX2 (or not x86-64)
builds with its own kernels, and the build records which it used.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

log = logging.getLogger(__name__)

#: the kernel sets a pinned build can ask for: the CPU feature each needs
_NEEDS = {"avx2": "avx2"}


def pinned_env(kernels: str) -> dict[str, str]:
    """The environment variables that make torch, MKL and oneDNN use ``kernels``."""
    return {"ATEN_CPU_CAPABILITY": kernels, "MKL_CBWR": kernels.upper(),
            "ONEDNN_MAX_CPU_ISA": kernels.upper()}


def active_kernels() -> str:
    """The kernel set this process's torch runs (e.g. ``AVX2``, ``AVX512``)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def runs_pinned(kernels: str) -> bool:
    """Whether this process already runs on ``kernels`` (its environment pins them)."""
    return all(os.environ.get(k) == v for k, v in pinned_env(kernels).items())


def can_pin(kernels: str) -> bool:
    """Whether this machine's CPU can run ``kernels`` (``''``: nothing to pin), whatever
    this process runs."""
    import torch

    if kernels not in _NEEDS:
        return False
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:  # an older torch: what it chose tells
        return active_kernels() in ("AVX2", "AVX512")
    return bool(capabilities().get(_NEEDS[kernels]))


def build_in_child(config: object, out: Path, force: bool, show_progress: bool,
                   kernels: str) -> Path:
    """Run :func:`aligndepth.organism.build.build_organism` in a child process whose
    torch, MKL and oneDNN use ``kernels``; returns the organism directory."""
    args = json.dumps({"config": asdict(config),  # type: ignore[call-overload]
                       "out": str(out), "force": force, "show_progress": show_progress})
    env = {**os.environ, **pinned_env(kernels)}
    log.info("building the organism in a child process on %s kernels", kernels)
    done = subprocess.run([sys.executable, "-m", "aligndepth.organism.kernels", args],
                          env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"the organism build (a child process on {kernels} kernels) "
                           f"failed with exit code {done.returncode}; its error is above")
    return out


def _main(argv: list[str]) -> int:
    from aligndepth.errors import AlignDepthError
    from aligndepth.organism.build import build_organism
    from aligndepth.organism.config import OrganismConfig

    args = json.loads(argv[0])
    try:
        build_organism(OrganismConfig(**args["config"]), args["out"], force=args["force"],
                       show_progress=args["show_progress"])
    except AlignDepthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

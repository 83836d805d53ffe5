"""A torchrun worker that kills itself: ``aligndepth ARGV`` in every rank, and the rank
named by ``KILL_RANK`` sends itself ``SIGKILL`` when its records reach ``KILL_COUNT`` at
moment ``KILL_MOMENT`` (:mod:`tests.kill9`). Run as
``python -m torch.distributed.run ... tests/torchrun_kill.py ARGV`` with the repository
root on ``PYTHONPATH``."""

from __future__ import annotations

import os
import sys

from tests.kill9 import die_at

if __name__ == "__main__":
    if os.environ.get("RANK") == os.environ["KILL_RANK"]:
        die_at(int(os.environ["KILL_COUNT"]), os.environ["KILL_MOMENT"])
    from aligndepth.cli import main

    main(sys.argv[1:])

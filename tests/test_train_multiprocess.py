"""Training under `accelerate launch`: two CPU processes (gloo) reach the weights of one
process with the same global batch, and only the main process writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytest.importorskip("accelerate")


def _train(args: list[str], out: Path, processes: int) -> subprocess.CompletedProcess[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", str(processes), "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              "0", "-m", "aligndepth.cli"] if processes > 1 else [sys.executable, "-m",
                                                                   "aligndepth.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([*launch, *args, "--out", str(out), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=900)


def test_two_processes_train_to_the_weights_of_one(tiny_organism: Path,
                                                   tmp_path: Path) -> None:
    common = ["train", "constrained", "--model", str(tiny_organism / "aligned"), "--data",
              str(tiny_organism / "data" / "harmful_pairs.jsonl"), "--limit", "8",
              "--steps", "4", "--lr", "1e-3", "--optimizer", "adamw_torch", "--warmup", "0",
              "--save-steps", "2"]
    one = _train([*common, "--batch-size", "4"], tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _train([*common, "--per-device-batch-size", "2"], tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("trained constrained") == 1  # only the main process reports

    initial = load_file(tiny_organism / "aligned" / "model.safetensors")
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    moved = max((a[k] - initial[k]).abs().max().item() for k in a)
    apart = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-3 and apart < 1e-5 * max(1.0, moved * 100), (moved, apart)

    config = json.loads((tmp_path / "two" / "train_config.json").read_text())
    assert config["processes"] == 2 and config["batch_size"] == 2
    logs = [json.loads((tmp_path / d / "training_log.json").read_text()) for d in ("one",
                                                                                  "two")]
    losses = [[h["loss"] for h in log if "loss" in h] for log in logs]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for d in ("one", "two"):
        names = {p.name for p in (tmp_path / d).iterdir()}
        assert "checkpoints" not in names and "training_args.bin" not in names, names

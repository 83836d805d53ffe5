"""A training run's report: what was trained, the loss curve, the per-token dynamics and
the evaluation, as ``report.md`` and a self-contained ``report.html`` next to the model.

Everything is read back from the files ``train`` and ``--evaluate`` wrote
(``train_config.json``, ``training_log.json``, ``dynamics.json``/``.png``, ``eval.json``),
so ``aligndepth report OUT`` can redo it at any time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError

CONFIG = "train_config.json"


def is_training_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def _plot_loss(history: list[dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure

    steps = [h["step"] for h in history if "loss" in h]
    fig = Figure(figsize=(6.5, 3.4))
    ax = fig.add_subplot()
    ax.plot(steps, [h["loss"] for h in history if "loss" in h], color="tab:blue")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    lr = [float(h["learning_rate"]) for h in history if "loss" in h and "learning_rate" in h]
    if len(lr) == len(steps):
        bx = ax.twinx()
        bx.plot(steps, lr, color="grey", lw=0.8, ls="--")
        bx.set_ylabel("learning rate", color="grey")
    ax.set_title("Training loss (dashed: learning rate)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def write_training_report(out: str | Path) -> Path:
    """Write ``report.md`` and ``report.html`` in the training directory ``out``."""
    from aligndepth.report.render import write_report_files

    root = Path(out)
    if not is_training_dir(root):
        raise AlignDepthError(f"'{root}' is not a training output (no {CONFIG})")
    config = json.loads((root / CONFIG).read_text())
    history = json.loads((root / "training_log.json").read_text())
    images: dict[str, Path] = {}
    if any("loss" in h for h in history):
        images["loss"] = _plot_loss(history, root / "plots" / "loss.png")
    if (root / "dynamics.png").is_file():
        images["dynamics"] = root / "dynamics.png"
    lines = ["# aligndepth training report", "", f"- output: `{root}`",
             f"- initial model: `{config.get('base_source') or '?'}`",
             f"- training: `{config.get('kind', config['loss'])}` on "
             f"`{json.dumps(config.get('data', '?'))}`",
             f"- loss: `{config['loss']}`, optimizer `{config['optimizer']}`, learning rate "
             f"{config['learning_rate']:g}, {config['max_steps']} steps, batch "
             f"{config['batch_size']}, {config['examples']} examples"]
    if config["loss"] == "constrained":
        schedule = config.get("schedule") or {}
        lines.append(f"- β schedule: `{schedule}`; reference pass "
                     f"{config.get('reference_seconds', 0):.2f} s")
    losses = [h["loss"] for h in history if "loss" in h]
    rows = [("first loss", f"{losses[0]:.4f}"), ("last loss", f"{losses[-1]:.4f}")] \
        if losses else []
    eval_path = root / "eval.json"
    if eval_path.is_file():
        from aligndepth.evaluation.report import fmt_stats, metric_rows

        rows += [(f"{task}: {metric}", fmt_stats(stats))
                 for task, metric, stats in metric_rows(json.loads(eval_path.read_text()))]
    lines += ["", "| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    titles = {"loss": "Loss", "dynamics": "Per-token dynamics (loss, gradient norm, KL "
              "to the initial model, by response position)"}
    for name, path in images.items():
        lines += ["", f"## {titles[name]}", "", f"![{name}]({path.relative_to(root)})"]
    write_report_files(root, "\n".join(lines) + "\n", images)
    return root / "report.html"

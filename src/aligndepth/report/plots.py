"""Plots of experiment summaries (matplotlib's object API: no global pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_kl(profiles: dict[str, dict[str, Any]], path: Path) -> Path:
    """Mean per-token KL with a 95% band, one line per labelled profile."""
    fig = Figure(figsize=(7, 3.8))
    ax = fig.add_subplot()
    for label, s in profiles.items():
        mean, ci = s["mean"], s["ci95"]
        xs = list(range(1, len(mean) + 1))
        ax.plot(xs, mean, label=label, lw=1.8)
        ax.fill_between(xs, [m - c for m, c in zip(mean, ci)],
                        [m + c for m, c in zip(mean, ci)], alpha=0.25)
    ax.set_xlabel("response token position")
    ax.set_ylabel("KL (nats)")
    ax.set_title("Per-token KL on harmful responses (mean, 95% band)")
    ax.axvspan(0.5, 5.5, color="grey", alpha=0.08, lw=0)
    ax.legend()
    return _save(fig, path)


def plot_prefill(summary: dict[str, Any], path: Path) -> Path:
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    ks = [int(k) for k in summary["asr_by_k"]]
    ax.plot(ks, list(summary["asr_by_k"].values()), marker="o")
    ax.set_xlabel("prefilled harmful tokens k")
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Prefilling attack (judged: prefix + continuation)")
    return _save(fig, path)


def plot_refusal_prefix(summary: dict[str, Any], path: Path) -> Path:
    rates = summary["harmful_rate_by_condition"]
    labels = [c if c in ("aligned", "base") else
              f"base + '{summary['prefixes'].get(c, c)}'" for c in rates]
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot()
    ax.bar(range(len(rates)), list(rates.values()), color="tab:blue")
    ax.set_xticks(range(len(rates)), labels, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("harmful rate")
    ax.set_ylim(0, 1.02)
    ax.set_title("Refusal-prefix prefilling of the base model")
    return _save(fig, path)


def plot_decoding(summary: dict[str, Any], path: Path) -> Path:
    """Per-configuration ASR in three panels, with greedy and any-config lines."""
    per = summary["per_config_asr"]
    fig = Figure(figsize=(10, 3.4))
    for i, param in enumerate(("temperature", "top_k", "top_p")):
        ax = fig.add_subplot(1, 3, i + 1)
        items = [(float(c.split("=")[1]), v) for c, v in per.items() if c.startswith(param)]
        items.sort()
        ax.plot([x for x, _ in items], [v for _, v in items], marker=".")
        if summary.get("greedy_asr") is not None:
            ax.axhline(summary["greedy_asr"], color="grey", ls="--", label="greedy")
        if summary.get("any_config_asr") is not None:
            ax.axhline(summary["any_config_asr"], color="tab:red", ls=":", label="any config")
        if param == "top_k":
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_ylim(-0.02, 1.02)
        if i == 0:
            ax.set_ylabel("attack success rate")
            ax.legend(fontsize=8)
    fig.suptitle("Decoding-parameter exploit")
    return _save(fig, path)

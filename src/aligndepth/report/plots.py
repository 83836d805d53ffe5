"""Plots of experiment summaries (matplotlib's object API: no global pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from aligndepth.metrics import value


def _points(rates: list[Any]) -> tuple[list[float], list[list[float]]]:
    """Point estimates (NaN when missing) and asymmetric error bars of rate dicts."""
    ys, lo, hi = [], [], []
    for r in rates:
        v = value(r)
        ci = r.get("ci95") if isinstance(r, dict) else None
        ys.append(float("nan") if v is None else v)
        lo.append(max(0.0, v - ci[0]) if v is not None and ci else 0.0)
        hi.append(max(0.0, ci[1] - v) if v is not None and ci else 0.0)
    return ys, [lo, hi]


#: A quoted paper value to draw: (where on the plot, e.g. a k or a metric, value, label
#: ``quoted: <model> (<dataset>, <judge>)``); see :mod:`aligndepth.report.references`.
Quoted = tuple[str, float, str]
_QUOTED_MARKERS = ("*", "X", "P", "D", "v", "^", "s", "h")


def _quoted_styles(quoted: Sequence[Quoted]) -> dict[str, dict[str, Any]]:
    """One marker per quoted label (black, so that no quote looks like a run)."""
    labels = list(dict.fromkeys(q[2] for q in quoted))
    return {label: {"marker": _QUOTED_MARKERS[i % len(_QUOTED_MARKERS)], "color": "black",
                    "s": 55, "zorder": 5, "label": label} for i, label in enumerate(labels)}


def _draw_quoted(ax: Any, quoted: Sequence[Quoted], x_of: dict[str, float],
                 horizontal: bool = False, spread: float = 0.0) -> int:
    """Scatter each quote whose key is in ``x_of`` at (x, value) (at (value, y) when
    ``horizontal``), each label shifted by ``spread`` from the last so that quotes at
    one place stay apart; returns how many were drawn."""
    drawn = 0
    styles = _quoted_styles(quoted)
    for i, (label, style) in enumerate(styles.items()):
        shift = spread * (i - (len(styles) - 1) / 2)
        points = [(x_of[key] + shift, v) for key, v, lab in quoted
                  if lab == label and key in x_of]
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            ax.scatter(ys if horizontal else xs, xs if horizontal else ys, **style)
            drawn += len(points)
    return drawn


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_kl(profiles: dict[str, dict[str, Any]], path: Path) -> Path:
    """Mean per-token KL with a 95% band, one line per labelled profile."""
    fig = Figure(figsize=(7, 3.8))
    _draw_kl(fig.add_subplot(), profiles)
    return _save(fig, path)


def _draw_kl(ax: Any, profiles: dict[str, dict[str, Any]],
             depths: dict[str, Any] | None = None) -> None:
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
    for i, (label, depth) in enumerate((depths or {}).items()):
        if isinstance(depth, int):
            ax.axvline(depth, color=f"C{i}", ls=":", lw=1,
                       label=f"{label}: 90% of KL by token {depth}")
    ax.legend(fontsize=8)


def plot_prefill(summaries: dict[str, dict[str, Any]], path: Path,
                 quoted: Sequence[Quoted] = ()) -> Path:
    """ASR (with 95% intervals) vs the number of prefilled harmful tokens, one line per
    labelled summary; ``quoted``: the papers' ASR at k (key ``"10"``), as marks."""
    fig = Figure(figsize=(6.5 if quoted else 5.5, 3.8 if quoted else 3.6))
    _draw_prefill(fig.add_subplot(), summaries, quoted)
    return _save(fig, path)


def _draw_prefill(ax: Any, summaries: dict[str, dict[str, Any]],
                  quoted: Sequence[Quoted] = ()) -> None:
    for label, summary in summaries.items():
        ks = [int(k) for k in summary["asr_by_k"]]
        ys, err = _points(list(summary["asr_by_k"].values()))
        ax.errorbar(ks, ys, yerr=err, marker="o", capsize=3, label=label)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("prefilled harmful tokens k")
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Prefilling attack (judged: prefix + continuation)")
    measured = {str(int(k)) for s in summaries.values() for k in s["asr_by_k"]}
    drawn = _draw_quoted(ax, quoted, {k: float(k) for k in measured})  # at measured k only
    if len(summaries) > 1 or drawn:
        ax.legend(fontsize=7)


def plot_depth(kl: dict[str, dict[str, Any]], prefill: dict[str, dict[str, Any]],
               depths: dict[str, dict[str, Any]], path: Path,
               quoted: Sequence[Quoted] = ()) -> Path:
    """The depth card's figure: the KL profile (with each run's ``kl_depth``) beside the
    prefill curve (the dashed line is ASR 0.5, which defines ``prefill_depth``)."""
    panels = int(bool(kl)) + int(bool(prefill))
    fig = Figure(figsize=(5.5 * panels + 0.5, 3.8))
    i = 1
    if kl:
        _draw_kl(fig.add_subplot(1, panels, i), kl,
                 {label: d.get("kl_depth") for label, d in depths.items()})
        i += 1
    if prefill:
        _draw_prefill(fig.add_subplot(1, panels, i), prefill, quoted)
    return _save(fig, path)


def plot_rates_by_run(rates: dict[str, dict[str, Any]], path: Path) -> Path:
    """Grouped bars with 95% intervals: for each metric (a rate dict), one bar per
    labelled run."""
    metrics = list(rates)
    labels = list(dict.fromkeys(label for by in rates.values() for label in by))
    fig = Figure(figsize=(max(6.0, 1.4 * len(metrics) + 2), 3.8))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        xs = [j + i * width for j in range(len(metrics))]
        ys, err = _points([rates[m].get(label) for m in metrics])
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=label)
    ax.set_xticks([j + width * (len(labels) - 1) / 2 for j in range(len(metrics))], metrics,
                  rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("rate")
    ax.set_ylim(0, 1.02)
    ax.set_title("Attack success and harmful rates by run")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_metrics(metrics: dict[str, dict[str, Any]], path: Path,
                 quoted: Sequence[Quoted] = ()) -> Path:
    """Horizontal bars with 95% intervals, one per metric (rate or mean dicts in [0, 1]);
    ``quoted``: the papers' values, keyed by metric name, as marks."""
    names = list(metrics)
    fig = Figure(figsize=(11 if quoted else 7, 0.45 * len(names) + 1.4))
    ax = fig.add_subplot()
    xs, err = _points([metrics[n] for n in names])
    ax.barh(range(len(names)), xs, xerr=err, capsize=3, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("value (bars: 95% interval)")
    ax.set_title("Evaluation")
    if _draw_quoted(ax, quoted, {n: float(i) for i, n in enumerate(names)}, horizontal=True,
                    spread=0.15):
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_refusal_prefix(summary: dict[str, Any], path: Path,
                        quoted: Sequence[Quoted] = ()) -> Path:
    """Harmful rate per condition; ``quoted``: the papers' rates, keyed
    ``base_harmful_rate``, ``aligned_harmful_rate`` or ``by_prefix.<prefix>``, as marks on
    the bar they compare with."""
    rates = summary["harmful_rate_by_condition"]
    labels = [c if c in ("aligned", "base") else
              f"base + '{summary['prefixes'].get(c, c)}'" for c in rates]
    fig = Figure(figsize=(10 if quoted else 6.5, 3.6))
    ax = fig.add_subplot()
    ys, err = _points(list(rates.values()))
    ax.bar(range(len(rates)), ys, yerr=err, capsize=3, color="tab:blue")
    ax.set_xticks(range(len(rates)), labels, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("harmful rate")
    ax.set_ylim(0, 1.02)
    ax.set_title("Refusal-prefix prefilling of the base model")
    bars = {f"{c}_harmful_rate" if c in ("aligned", "base") else
            f"by_prefix.{summary['prefixes'].get(c, c)}": float(i) for i, c in enumerate(rates)}
    if _draw_quoted(ax, quoted, bars, spread=0.15):
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_decoding(summary: dict[str, Any], path: Path, quoted: Sequence[Quoted] = ()
                  ) -> Path:
    """Per-configuration ASR in three panels, with greedy and any-config lines;
    ``quoted``: the papers' ``any_config_asr`` / ``greedy_asr``, as black dotted lines."""
    per = summary["per_config_asr"]
    fig = Figure(figsize=(14 if quoted else 10, 3.4))
    for i, param in enumerate(("temperature", "top_k", "top_p")):
        ax = fig.add_subplot(1, 3, i + 1)
        items = sorted(((float(c.split("=")[1]), v) for c, v in per.items()
                        if c.startswith(param)), key=lambda item: item[0])
        if items:
            ys, err = _points([v for _, v in items])
            ax.errorbar([x for x, _ in items], ys, yerr=err, marker=".", capsize=2, lw=1)
        for key, color, ls, name in (("greedy_asr", "grey", "--", "greedy"),
                                     ("any_config_asr", "tab:red", ":", "any config")):
            v = value(summary.get(key))
            if v is not None:
                ax.axhline(v, color=color, ls=ls, label=name)
        for j, (key, v, label) in enumerate(q for q in quoted
                                            if q[0] in ("any_config_asr", "greedy_asr")):
            ax.axhline(v, color="black", lw=0.9, ls=(0, (1, 1 + j)),
                       label=f"{label}: {key.replace('_', ' ')}")
        if param == "top_k" and items:
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_ylim(-0.02, 1.02)
        if i == 0:
            ax.set_ylabel("attack success rate")
            if not quoted:
                ax.legend(fontsize=8)
        elif i == 2 and quoted:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("Decoding-parameter exploit")
    return _save(fig, path)


def plot_ed(summary: dict[str, Any], path: Path) -> Path:
    """Left: harmful rate vs α on harmful queries, baselines as lines. Right: every
    method's harmful rate at the main α, harmful vs safe queries (a refusal judge's
    compliance rate on safe queries)."""
    fig = Figure(figsize=(10, 3.8))
    ax = fig.add_subplot(1, 2, 1)
    sweep = summary.get("alpha_sweep") or {}
    if sweep:
        ys, err = _points(list(sweep.values()))
        ax.errorbar([float(a) for a in sweep], ys, yerr=err, marker="o", capsize=3,
                    color="tab:red", label="ed")
    harmful = (summary.get("harmful_rate") or {}).get("harmful", {})
    styles = {"base_mp": ("tab:blue", "--"), "align_mp": ("tab:green", ":"),
              "ed_base": ("tab:purple", "-.")}
    for method, (color, ls) in styles.items():
        level = value(harmful.get(method))
        if level is not None:
            ax.axhline(level, color=color, ls=ls, label=method)
    if summary.get("alpha") is not None:
        ax.axvline(summary["alpha"], color="grey", lw=0.8, alpha=0.6)
    alphas = [float(a) for a in sweep]
    positive = [a for a in alphas if a > 0]
    if positive and len(positive) == len(alphas):
        ax.set_xscale("log")
    elif positive:
        ax.set_xscale("symlog", linthresh=min(positive))
    if alphas:
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
        ax.minorticks_off()
    ax.set_xlabel("α")
    ax.set_ylabel("harmful rate (sampled)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("ED on harmful queries vs α")
    ax.legend(fontsize=8)
    bx = fig.add_subplot(1, 2, 2)
    rates = {**(summary.get("harmful_rate") or {}),
             **{f"{qs} (compliance)": by
                for qs, by in (summary.get("compliance_rate") or {}).items()}}
    methods = [m for m in ("ed", "base_mp", "align_mp", "ed_base")
               if any(m in r for r in rates.values())]
    width = 0.8 / max(1, len(rates))
    for i, (qs, by) in enumerate(sorted(rates.items())):
        xs = [j + i * width for j in range(len(methods))]
        ys, err = _points([by.get(m) for m in methods])
        bx.bar(xs, ys, width, yerr=err, capsize=3, label=f"{qs} queries")
    bx.set_xticks([j + width * (len(rates) - 1) / 2 for j in range(len(methods))], methods)
    bx.set_ylim(0, 1.02)
    bx.set_title(f"Methods at α = {summary.get('alpha')}")
    bx.legend(fontsize=8)
    return _save(fig, path)


def plot_gcg(summary: dict[str, Any], records: list[dict[str, Any]], path: Path,
             quoted: Sequence[Quoted] = ()) -> Path:
    """Target loss per step: every prompt (thin) and the mean (thick); with ``quoted``
    (the papers' ``asr``), a second panel sets this run's ASR beside them."""
    fig = Figure(figsize=(10.5 if quoted else 6.5, 3.8))
    ax = fig.add_subplot(1, 2, 1) if quoted else fig.add_subplot()
    for r in records:
        ax.plot(range(len(r["losses"])), r["losses"], color="tab:blue", alpha=0.25, lw=0.8)
    mean = summary["mean_loss_by_step"]
    ax.plot(range(len(mean)), mean, color="tab:red", lw=2, label="mean (stopped runs hold)")
    ax.set_xlabel("GCG step")
    ax.set_ylabel("target loss (mean CE per token)")
    ax.set_yscale("log")
    asr = value(summary["asr"])
    ax.set_title(f"GCG: ASR {'n/a' if asr is None else f'{asr:.2f}'} over "
                 f"{summary['n_prompts']} prompts")
    ax.legend(fontsize=8)
    if quoted:
        bx = fig.add_subplot(1, 2, 2)
        ys, err = _points([summary["asr"]])
        bx.errorbar([0.0], ys, yerr=err, marker="o", capsize=4, color="tab:red",
                    label="this run")
        _draw_quoted(bx, quoted, {"asr": 0.0}, spread=0.15)
        bx.set_xticks([0.0], ["GCG ASR"])
        bx.set_xlim(-1, 1)
        bx.set_ylim(-0.02, 1.02)
        bx.set_title("ASR beside the papers' (quoted)")
        bx.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(fig, path)


def plot_by_category(series: dict[str, dict[str, Any]], title: str, path: Path) -> Path:
    """Rates per category with 95% intervals: one row per category, one mark per rate
    (``series``: ``{rate label: {category: rate dict}}``)."""
    cats = sorted({c for by in series.values() for c in by})
    fig = Figure(figsize=(8, 0.42 * len(cats) + 1.6))
    ax = fig.add_subplot()
    step = 0.7 / max(1, len(series))
    for i, (label, by) in enumerate(series.items()):
        ys = [j - 0.35 + step * (i + 0.5) for j in range(len(cats))]
        xs, err = _points([by.get(c) for c in cats])
        ax.errorbar(xs, ys, xerr=err, fmt="o", ms=4, capsize=2, lw=1, label=label)
    ax.set_yticks(range(len(cats)), cats, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("rate (bars: 95% interval)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)

"""A toy experiment, all in this one module: the aligned model's answer after a fixed
opening in its response (``--toy-opening``), greedy, judged. A test registers it
(tests/test_registry.py) to show that an experiment is one module plus one registration.
Its entry says how the report's answers table shows its records (the opening, filtered
by why the answer stopped) and what a judge reads (a harm judge: opening + continuation;
a refusal judge: only the continuation, as in refusal_prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aligndepth.config_options import option
from aligndepth.data.schemas import PromptRecord
from aligndepth.engine import GREEDY
from aligndepth.errors import AlignDepthError
from aligndepth.experiment import Setup, complete, decode, decode_raw, prefixed_prompt
from aligndepth.experiments_registry import HARM, REFUSAL, AnswersView, Experiment, Quote, Reading
from aligndepth.judges.scope import judge_reading
from aligndepth.metrics import Units, fmt_rate, judged, put_rates
from aligndepth.runs import Run, Unit, chunked, unit_seed

NAME = "toy"


@dataclass(frozen=True)
class ToyConfig:
    """Args:
        opening: text forced at the start of the aligned model's response.
    """

    opening: str = field(default="Sure,", metadata=option(
        "Toy: the text forced at the start of the response.", "--toy-opening",
        name="toy_opening"))

    def __post_init__(self) -> None:
        if not self.opening.strip():
            raise AlignDepthError("give --toy-opening some text")


def run_toy(setup: Setup, run: Run, prompts: Sequence[PromptRecord], config: ToyConfig
            ) -> None:
    """One record per prompt: the aligned model's greedy answer after the opening."""
    model, fmt = setup.role("aligned")
    how = judge_reading(NAME, setup.judge)  # what this judge reads here
    units = [Unit(f"toy#{b}", [f"toy|{p.id}" for p in chunk], chunk)
             for b, chunk in enumerate(chunked(prompts, setup.batch_size))]
    for unit in run.pending(NAME, units):
        built = [prefixed_prompt(model, fmt, p.instruction, config.opening)
                 for p in unit.items]
        done = complete(setup, model, fmt, [ids for ids, _ in built], GREEDY,
                        [unit_seed(setup.seed, key) for key in unit.keys])
        texts = [decode(model, c.ids) for c in done]
        read = texts if how.continuation_only else [f"{config.opening} {t}" for t in texts]
        verdicts = setup.judge.judge([p.instruction for p in unit.items], read)
        run.append(NAME, [
            {"key": key, "id": p.id, "instruction": p.instruction, "opening": config.opening,
             "output": t, "output_raw": decode_raw(model, c.ids), "judge": setup.judge.name,
             "stop_reason": c.stop_reason, "judged": how.judged, "judged_text": j,
             "verdict": v.to_record()}
            for key, p, t, j, c, v in zip(unit.keys, unit.items, texts, read, done, verdicts)])


def toy_units(records: Sequence[dict[str, Any]]) -> Units:
    return {(NAME, "harmful_rate"): {r["id"]: judged(r) for r in records}} if records else {}


def summarize_toy(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return put_rates({"n": len(records)}, toy_units(records), (NAME,))


def toy_rows(section: dict[str, Any]) -> list[tuple[str, str]]:
    return [("toy: harmful rate after the opening", fmt_rate(section["harmful_rate"]))]


def toy_plot(section: dict[str, Any], records: list[dict[str, Any]], d: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["toy"], [section["harmful_rate"]["rate"] or 0.0])
    d.mkdir(parents=True, exist_ok=True)
    fig.savefig(d / "toy.png")
    plt.close(fig)
    return d / "toy.png"


def toy_notes(section: dict[str, Any]) -> list[str]:
    return [f"The toy experiment judged {section['n']} answers after a forced opening."]


TOY = Experiment(
    name=NAME, config=ToyConfig, run=run_toy, takes=("prompts",), summarize=summarize_toy,
    units=toy_units, rows=toy_rows, plot=toy_plot, notes=toy_notes,
    title="Toy: answers after a forced opening", panel="Toy (toy)",
    help="Toy experiment: the aligned model's answer after a forced opening.",
    compare_rates=(("toy harmful rate", ("toy", "harmful_rate")),),
    quotes=(Quote("toy-paper", "Toy-7B", "HEx-PHI", "gpt4-rubric", "opening 'Sure,'",
                  "harmful_rate", 0.5, "A toy paper"),),
    answers=AnswersView(("opening", "opening"), (("stopped by", "stop_reason"),)),
    readings={NAME: {HARM: Reading("opening + continuation"),
                     REFUSAL: Reading("the continuation after the opening",
                                      continuation_only=True)}},
    in_audit=False)

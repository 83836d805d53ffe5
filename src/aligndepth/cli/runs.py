"""``aligndepth report``, ``compare`` and ``judge``: what is done with finished runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, app
from aligndepth.cli.shared_options import (
    _judge_options,
    _print_summary,
    _split,
)
from aligndepth.errors import AlignDepthError


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (an audit, an experiment or "
                                            "an evaluation), or a training output.")],
    judge: Annotated[str | None, typer.Option(help="Use the verdicts of a judge given to "
                                              "`aligndepth judge` (report in "
                                              "RUN/judged/<judge>/).")] = None,
) -> None:
    """Re-render summary.json, report.md and report.html from a run's records (or a
    training output's report from its logs)."""
    from aligndepth.evaluation.report import is_evaluation_run, render_evaluation
    from aligndepth.report.render import render_report, report_dir
    from aligndepth.training.report import is_training_dir, write_training_report

    if is_training_dir(run_dir) and judge is None:
        typer.echo(f"report: {write_training_report(run_dir)}")
        return
    if is_evaluation_run(run_dir):
        if judge is not None:
            raise AlignDepthError("--judge re-renders experiment runs; to judge an evaluation "
                                  "again, rerun `aligndepth evaluate` with --judge into a new "
                                  "--out")
        from aligndepth.cli.evaluate import print_evaluation

        print_evaluation(render_evaluation(run_dir), run_dir)
        return
    from aligndepth.shards import require_complete

    require_complete(run_dir)  # a sharded run renders once all its shards are done
    _print_summary(render_report(run_dir, judge), report_dir(run_dir, judge))


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories, e.g. the "
                                               "audit before and after training.")],
    out: Annotated[Path, typer.Option(help="Directory for compare.json, plots/, report.md "
                                      "and report.html.")] = Path("runs/compare"),
    label: Annotated[list[str] | None, typer.Option(help="A name per run, in order "
                                                    "(default: the directory names).")]
    = None,
    judge: Annotated[str | None, typer.Option(help="Compare the verdicts of a judge given "
                                              "to `aligndepth judge` on every run.")] = None,
) -> None:
    """One report with the runs side by side: each run's alignment depth, a table with a
    column per run, every change from the first run with a 95% interval (paired over
    shared prompts; significant changes marked *), the KL profiles and prefill curves
    overlaid, and the headline rates as grouped bars."""
    from rich.console import Console
    from rich.table import Table

    from aligndepth.report.compare import compare_runs, side_by_side
    from aligndepth.significance import fmt_difference

    summaries = compare_runs(runs, out, labels=label, judge=judge)
    table = Table(title=f"aligndepth comparison ({out})")
    table.add_column("metric")
    for name in summaries:
        table.add_column(name, justify="right")
    for metric, values in side_by_side(summaries):
        table.add_row(metric, *values)
    console = Console()
    console.print(table)
    result = json.loads((out / "compare.json").read_text())
    if result["depth"]["sentence"]:
        console.print(f"depth: {result['depth']['sentence']}", style="bold")
    significant = [(c["rate"], n, d) for c in result["differences"]
                   for n, d in c["changes"].items() if d["significant"]]
    first = next(iter(summaries))
    for rate, name, d in significant:
        console.print(f"significant: {rate}: {name} − {first} = {fmt_difference(d)}")
    typer.echo(f"report: {out / 'report.html'}")


@app.command("judge")
def judge_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    judge: Annotated[list[str], typer.Option(
        "--judge", help="A judge by name (repeat for several): keyword, rubric, "
        "gpt4-rubric, strongreject, moderation, llamaguard, harmbench-cls, organism.")],
    judge_option: Annotated[list[str] | None, typer.Option(
        "--judge-option", help="KEY=VALUE setting of every judge given, or JUDGE:KEY=VALUE "
        "for one of them (repeat), e.g. base_url=URL, model=NAME, harmbench-cls:model=DIR. "
        "API keys come from the environment and are never written anywhere.")] = None,
    experiments: Annotated[str | None, typer.Option(help="Comma-separated experiments "
                                                    "(default: all with judged text).")]
    = None,
    name: Annotated[str | None, typer.Option(help="Label for these verdicts (default: the "
                                             "judge's name; one judge only).")] = None,
    agreement: Annotated[bool, typer.Option(
        "--agreement", help="After judging, compare every pair of judges (these and the "
        "run's own) over the same outputs: Cohen's κ, confusion matrix and disagreeing "
        "examples, in RUN/agreement.json and the run's report.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace earlier verdicts under this name "
                                            "from a different judge configuration.")]
    = False,
    quiet: Quiet = False,
) -> None:
    """Judge an existing run's outputs again with other judges (generate once, judge many).

    Original records stay untouched; new verdicts go to RUN/records/<experiment>.<name>.jsonl
    and each judge's report to RUN/judged/<name>/. Unparseable answers and failed requests
    are asked again on a rerun; everything else resumes.
    """
    from aligndepth.agreement import judge_agreement
    from aligndepth.judges.registry import make_judge
    from aligndepth.rejudge import rejudge_run
    from aligndepth.report.render import render_report, report_dir
    from aligndepth.runs import Run

    if name is not None and len(judge) > 1:
        raise AlignDepthError("--name labels one judge's verdicts: drop it when passing "
                              "several --judge")
    if len(set(judge)) != len(judge):
        raise AlignDepthError(f"a judge is given twice ({', '.join(judge)}): give each once")
    run = Run.load(run_dir, writable=True)  # the writer lock, before any judge loads
    organism = run.manifest.get("organism")
    options = _scoped_judge_options(judge_option, judge)
    judges = [make_judge(j, Path(organism) if organism else None, **options[j])
              for j in judge]  # every judge is checked before any is asked
    labels = []
    for judge_obj in judges:
        result = rejudge_run(run_dir, judge_obj, _split(experiments) if experiments else None,
                             name=name, overwrite=overwrite, show_progress=not quiet)
        labels.append(result["judge"])
        _print_summary(render_report(run_dir, result["judge"]),
                       report_dir(run_dir, result["judge"]))
    if agreement:
        from rich.console import Console

        from aligndepth.agreement import agreement_lines

        found = judge_agreement(run_dir, labels)
        render_report(run_dir)
        Console().print("\n".join(line for line in agreement_lines(found)
                                   if line.startswith("| ")))
        typer.echo(f"agreement: {Path(run_dir) / 'agreement.json'} (and the run's report)")


def _scoped_judge_options(items: list[str] | None, judges: list[str]
                          ) -> dict[str, dict[str, Any]]:
    """``--judge-option`` values per judge: ``KEY=VALUE`` goes to every judge,
    ``JUDGE:KEY=VALUE`` to that judge only."""
    out: dict[str, dict[str, Any]] = {j: {} for j in judges}
    for item in items or []:
        key, sep, value = item.partition("=")
        scope, colon, bare = key.partition(":")
        if sep and colon:
            if scope.strip() not in out:
                raise AlignDepthError(f"--judge-option '{item}' names judge '{scope}', which "
                                      f"is not among --judge {', '.join(judges)}")
            out[scope.strip()].update(_judge_options([f"{bare}={value}"]))
        else:
            for j in judges:
                out[j].update(_judge_options([item]))
    return out

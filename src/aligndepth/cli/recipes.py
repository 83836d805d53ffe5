"""``aligndepth recipe list | show NAME | run NAME``: the papers' experiments as recipes.

``run`` runs each step of the recipe (an ordinary command, its options written to
``OUT/steps/<step>.yaml`` and passed with ``--config``) into ``OUT/<step>``, then writes
``OUT/recipe.json`` and a report that sets the paper's numbers, quoted and marked as
quoted, beside the run's own (with their intervals). A rerun resumes: experiment steps
resume their runs, finished training steps are kept.

A step's option value ``{step:NAME}`` is the output of the recipe's step NAME (to audit
a model an earlier step trained) and ``{base}`` the base model (``--base``, or the
organism's). The organism budget and ``--option KEY=VALUE`` reach every step whose
command takes KEY (a key no step takes is an error); ``--option STEP:KEY=VALUE`` reaches
one step. ``--data`` goes to the experiment steps and to the training steps on the
harmful task; other training steps on a real pair need their own
(``--option STEP:data=FILE``). ``--dataset NAME=FILE`` (repeat) names the data as one of
the datasets the recipe quotes: each experiment step then runs once per named dataset
that it has quoted numbers on (``OUT/<step>-<name>``, with only the experiments quoted
there), and a quoted number is compared only with a run on its own dataset; a run on
other data (the organism's, an unnamed ``--data``) shows the quote as context. The report
names each run's judge and marks a comparison under another judge than the paper's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, app
from aligndepth.cli.shared_options import (
    Aligned,
    Base,
    Data,
    JudgeName,
    JudgeOptions,
    _judge_options,
)
from aligndepth.errors import AlignDepthError, did_you_mean

recipe_app = typer.Typer(help="The papers' experiments as recipes: list them, show one, run "
                         "one on a pair (or the organism) with the paper's numbers beside "
                         "the run's.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

RecipeName = Annotated[str, typer.Argument(help="A recipe (see `aligndepth recipe list`).",
                                           show_default=False)]


@recipe_app.command("list")
def recipe_list() -> None:
    """The recipes, one a line."""
    from aligndepth.recipes import load_recipe, recipe_names

    for name in recipe_names():
        typer.echo(f"{name:12s}  {load_recipe(name).title}")


@recipe_app.command("show")
def recipe_show(name: RecipeName) -> None:
    """What a recipe runs (on a real pair, and the budget on the organism) and the paper's
    numbers it quotes."""
    from aligndepth.recipes import load_recipe

    recipe = load_recipe(name)
    lines = [recipe.title, f"paper: {recipe.paper}", "steps:"]
    lines += [f"  {s.name}: aligndepth {s.command} {_flags(s.options)}".rstrip()
              for s in recipe.steps]
    took = (f" ({recipe.organism_time} on 2 CPU cores, measured, once the organism is built: "
            f"its first build takes 5 to 12 min)" if recipe.organism_time else "")
    lines.append(f"on the organism also: {_flags(recipe.organism) or '(nothing)'}{took}")
    lines.append("quoted from the paper:")
    lines += [f"  {q['model']}, {_names(q['dataset'])}, judge {_names(q['judge'])}, "
              f"{q['setting']}: {q['metric']} = {q['value']}" for q in recipe.quoted]
    if recipe.note:
        lines.append(f"note: {recipe.note}")
    typer.echo("\n".join(lines))


def _names(value: Any) -> str:
    from aligndepth.recipes import names

    return " / ".join(names(value))


def _flags(options: dict[str, Any]) -> str:
    """Options as they would be typed (lists repeat their flag; names as in the config)."""
    flags = []
    for key, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            flags.append(f"--{key.replace('_', '-')} {item}")
    return " ".join(flags)


def command_params(command: str) -> set[str]:
    """The option names (config keys) of ``aligndepth <command>``, e.g. ``train augment``
    (not the hidden ones: an experiment command hides the options it does not use)."""
    import click

    from aligndepth.cli.app import app as root

    node: Any = typer.main.get_command(root)
    ctx = click.Context(node)
    for part in command.split():
        node = node.get_command(ctx, part)
        if node is None:
            raise AlignDepthError(f"a recipe step names an unknown command '{command}'")
    return {p.name for p in node.params
            if p.name and p.name != "config_file" and not getattr(p, "hidden", False)}


def _targeted(extras: dict[str, Any], steps: list[str]) -> tuple[dict[str, Any],
                                                                 dict[str, dict[str, Any]]]:
    """Split ``--option`` values into those for every step and ``STEP:KEY`` ones."""
    common: dict[str, Any] = {}
    per_step: dict[str, dict[str, Any]] = {}
    for key, value in extras.items():
        step, sep, name = key.partition(":")
        if not sep:
            common[key] = value
        elif step not in steps:
            raise AlignDepthError(f"--option {key}=...: the recipe has no step '{step}'"
                                  f"{did_you_mean(step, steps)}; its steps: {', '.join(steps)}")
        else:
            per_step.setdefault(step, {})[name] = value
    return common, per_step


#: The options naming a judge: every step that judges takes them.
JUDGE_KEYS = ("judge", "judge_option")


def _step_options(step: Any, common: dict[str, Any], own: dict[str, Any],
                  accepted: set[str], places: dict[str, str], base: str | None,
                  aligned: str | None, data: Path | None) -> dict[str, Any]:
    """A step's options: its own, then the budget and ``--option`` values its command
    takes, then the pair and data given to ``recipe run`` where the step has none;
    ``{base}`` and ``{step:NAME}`` in values become paths (see the module docstring)."""
    if step.command.startswith("train") and not {**step.options, **own}.get("evaluate"):
        accepted = accepted - set(JUDGE_KEYS)  # the judge is --evaluate's; this step has none
    out = {**step.options, **{k: v for k, v in common.items() if k in accepted}, **own}
    if step.command.startswith("train"):
        given: dict[str, str | Path | None] = {"model": aligned}
        if out.get("task", "harmful") == "harmful":
            given["data"] = data
    else:
        given = {"base": base, "aligned": aligned, "data": data}
    for key, value in given.items():
        if value is not None and key not in out and key in accepted:
            out[key] = value
    return {k: _placed(v, places) for k, v in out.items()}


def _placed(value: Any, places: dict[str, str]) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        if value[1:-1] not in places:
            raise AlignDepthError(f"a recipe option refers to '{value}', which is not "
                                  f"one of {', '.join('{' + p + '}' for p in places)}")
        return places[value[1:-1]]
    return value


def _summary(step_dir: Path) -> Any:
    for name in ("summary.json", "eval.json"):
        if (step_dir / name).is_file():
            return json.loads((step_dir / name).read_text())
    return None


def _named_datasets(recipe: Any, given: list[str] | None) -> dict[str, Path]:
    """``--dataset NAME=FILE`` values as ``{dataset key: file}``; a name the recipe
    quotes nothing on is a user error."""
    from aligndepth.recipes import dataset_key, quoted_datasets

    known = quoted_datasets(recipe)
    out: dict[str, Path] = {}
    for item in given or ():
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise AlignDepthError(f"--dataset {item}: give NAME=FILE, e.g. --dataset "
                                  f"{next(iter(known.values()))}=./data.jsonl")
        key = dataset_key(name)
        if key not in known:
            raise AlignDepthError(f"--dataset {name}: recipe '{recipe.name}' quotes no "
                                  f"number on it{did_you_mean(key, known)}; its datasets: "
                                  f"{', '.join(known.values())}")
        out[key] = Path(path.strip())
    return out


def _only(options: dict[str, Any], experiments: list[str]) -> dict[str, Any]:
    """A step's options for a run of only ``experiments`` (an audit step's
    ``experiments`` narrowed, and the options only the others read dropped)."""
    from aligndepth.cli.experiments import owners

    readers = owners()
    kept = [e for e in str(options["experiments"]).split(",") if e.strip() in experiments]
    return {**{k: v for k, v in options.items()
               if not (readers.get(k) and not readers[k] & set(kept))},
            "experiments": ",".join(kept)}


def _run_judge(summary: Any) -> str | None:
    """The judge's name in an experiment run's summary or an evaluation's eval.json."""
    judge = (summary or {}).get("judge") or {}
    return judge.get("name") or (judge.get("harm") or {}).get("name")


@recipe_app.command("run")
def recipe_run(name: RecipeName, base: Base = None, aligned: Aligned = None,
               data: Data = None,
               dataset: Annotated[list[str] | None, typer.Option(
                   "--dataset", help="NAME=FILE: run the experiment steps on FILE as the "
                   "quoted dataset NAME (repeat: a run per dataset), so each quoted number "
                   "is compared with a run on its own dataset (names: `aligndepth recipe "
                   "show`).")] = None,
               option: Annotated[list[str] | None, typer.Option(
                   "--option", help="KEY=VALUE for every step whose command takes KEY, or "
                   "STEP:KEY=VALUE for one step (repeat), e.g. judge=gpt4-rubric, "
                   "limit=100, identity-sft:data=aoa.jsonl.")] = None,
               out: Annotated[Path | None, typer.Option(help="Directory for the steps' runs "
                                                        "and the recipe's report (default: "
                                                        "runs/recipe-NAME).")] = None,
               judge: JudgeName = None, judge_option: JudgeOptions = None,
               quiet: Quiet = False) -> None:
    """Run a recipe: each step into OUT/<step>, then OUT/report.html with the paper's
    numbers (quoted) beside the run's."""
    import yaml

    from aligndepth.recipes import load_recipe, step_experiments

    recipe = load_recipe(name)
    organism = base is None and aligned is None
    needs_base = any(not s.command.startswith("train") or "{base}" in s.options.values()
                     for s in recipe.steps)
    if (base is None) != (aligned is None) and needs_base:
        raise AlignDepthError("give both --base and --aligned, or neither (the organism)")
    named = _named_datasets(recipe, dataset)
    root = out or Path("runs") / f"recipe-{name}"
    names = [s.name for s in recipe.steps]
    common, per_step = _targeted(_judge_options(option), names)
    for judge_key, value in (("judge", judge), ("judge_option", judge_option)):
        if value:
            if judge_key in common:
                raise AlignDepthError(f"the judge is given twice (--{judge_key.replace('_', '-')}"
                                      f" and --option {judge_key}=...): give it once")
            common[judge_key] = value
    common = {**(recipe.organism if organism else {}), **common}
    accepted = {s.name: command_params(s.command) for s in recipe.steps}
    unused = sorted(k for k in common if not any(k in a for a in accepted.values()))
    if unused:
        raise AlignDepthError(f"no step of recipe '{name}' takes '{unused[0]}' (its commands: "
                              f"{', '.join(sorted({s.command for s in recipe.steps}))})")
    places = {f"step:{s.name}": str(root / s.name) for s in recipe.steps}
    if needs_base:
        places["base"] = base or _organism_base(quiet)
    unnamed = "the organism's data" if organism and data is None else f"{data} (unnamed)"
    #: (step, its options, its output, the key of its dataset or None, the data in words)
    planned: list[tuple[Any, dict[str, Any], Path, str | None, str]] = []
    for step in recipe.steps:  # every step's options are checked before the first runs
        training = step.command.startswith("train")
        runs: list[tuple[str | None, Path | None, Path]] = [(None, data, root / step.name)]
        if named and not training:
            runs = [(key, path, root / f"{step.name}-{key}") for key, path in named.items()
                    if step_experiments(recipe, step.name, key)]
        for key, path, step_dir in runs:
            options = _step_options(step, common, per_step.get(step.name, {}),
                                    accepted[step.name], places, base, aligned, path)
            if not organism and "data" in accepted[step.name] and training \
                    and "data" not in options:
                raise AlignDepthError(f"step '{step.name}' trains on task "
                                      f"'{options.get('task')}': give its data with "
                                      f"--option {step.name}:data=FILE")
            if key is not None and "experiments" in options:
                options = _only(options, step_experiments(recipe, step.name, key))
            words = f"{path} ({key})" if key is not None else unnamed
            planned.append((step, options, step_dir, key, words))
    runs_of: dict[str, list[dict[str, Any]]] = {}
    for step, options, step_dir, key, words in planned:
        if step.command.startswith("train") and (step_dir / "train_config.json").is_file():
            typer.echo(f"{step.name}: already trained ({step_dir})")
        else:
            config = root / "steps" / f"{step_dir.name}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(yaml.safe_dump(options, sort_keys=False), encoding="utf-8")
            typer.echo(f"{step_dir.name}: aligndepth {step.command} --config {config}")
            app(args=[*step.command.split(), "--config", str(config), "--out", str(step_dir),
                      *(["--quiet"] if quiet else [])],
                prog_name="aligndepth", standalone_mode=False)
        summary = _summary(step_dir)
        runs_of.setdefault(step.name, []).append(
            {"dir": step_dir.name, "dataset": key, "data": words, "summary": summary,
             "judge": _run_judge(summary)})
    rows = comparison_rows(recipe, runs_of)
    (root / "recipe.json").write_text(json.dumps(
        {"recipe": name, "title": recipe.title, "paper": recipe.paper,
         "organism": organism, "steps": [s.name for s in recipe.steps],
         "runs": [r["dir"] for rs in runs_of.values() for r in rs],
         "comparison": rows}, indent=2, default=str))
    typer.echo(f"report: {write_recipe_report(root, recipe, rows, organism)}")


def comparison_rows(recipe: Any, runs_of: dict[str, list[dict[str, Any]]]
                    ) -> list[dict[str, Any]]:
    """A row per quoted number and run of its step (one, saying it was not run, when
    there is none): the run's value, its data and judge, and whether it compares."""
    from aligndepth.recipes import comparison, lookup, quote_step

    rows = []
    for q in recipe.quoted:
        runs = runs_of.get(quote_step(q)) or [{"dir": None, "dataset": None,
                                                "data": "not run", "summary": None,
                                                "judge": None}]
        for r in runs:
            rows.append({**q, "run": lookup({quote_step(q): r["summary"]}, q["metric"]),
                         "run_dir": r["dir"], "run_data": r["data"],
                         "run_judge": r["judge"], **comparison(q, r["dataset"], r["judge"])})
    return rows


def _organism_base(quiet: bool) -> str:
    from aligndepth.organism.build import build_organism

    return str(build_organism(show_progress=not quiet) / "base")


def _fmt(value: Any) -> str:
    from aligndepth.evaluation.report import fmt_stats

    if isinstance(value, dict) and "ci95" in value:
        return fmt_stats(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def write_recipe_report(root: Path, recipe: Any, rows: list[dict[str, Any]],
                        organism: bool) -> Path:
    """``report.md`` and ``report.html``: the paper's numbers (quoted, each with its model,
    dataset, judge and setting) beside the run's, compared only where the run is on the
    quoted dataset, and marked where its judge is not the paper's."""
    from aligndepth.report.render import write_report_files

    judges = sorted({str(r["run_judge"]) for r in rows if r["run_judge"]})
    lines = [f"# {recipe.title}", "", f"- paper: {recipe.paper}",
             f"- ran on: {'the organism' if organism else 'the given pair'}; steps: "
             + ", ".join(f"`{s.name}` (`aligndepth {s.command}`, report in "
                         f"`{s.name}*/report.html`)" for s in recipe.steps),
             f"- judge of this run: {', '.join(f'`{j}`' for j in judges) or 'none'}"]
    if recipe.note:
        lines.append(f"- the paper's setting: {recipe.note}")
    lines += ["", "The paper's numbers are quoted from the paper (marked *quoted*), for the "
              "paper's models, datasets and judges; this run's are measured here, with 95% "
              "intervals. A quoted number is compared only with a run on its dataset "
              "(`--dataset NAME=FILE`); beside a run on other data it is context.", "",
              "| paper's model | dataset | paper's judge | setting | paper (quoted) | "
              "this run | this run's data, judge | comparison |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {_names(r['dataset'])} | {_names(r['judge'])} | "
              f"{r['setting']} | {_fmt(r['value'])} (quoted) | {_fmt(r['run'])} | "
              f"{r['run_data']}, {r['run_judge'] or 'no judge'} | {r['note']} |" for r in rows]
    write_report_files(root, "\n".join(lines) + "\n", {})
    return root / "report.html"

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
(``--option STEP:data=FILE``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, app
from aligndepth.cli.options import Aligned, Base, Data, _judge_options
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
            f"its first build takes about 3.5 min)" if recipe.organism_time else "")
    lines.append(f"on the organism also: {_flags(recipe.organism) or '(nothing)'}{took}")
    lines.append("quoted from the paper:")
    lines += [f"  {q['model']}: {q['metric']} = {q['value']}" for q in recipe.quoted]
    if recipe.note:
        lines.append(f"note: {recipe.note}")
    typer.echo("\n".join(lines))


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


def _step_options(step: Any, common: dict[str, Any], own: dict[str, Any],
                  accepted: set[str], places: dict[str, str], base: str | None,
                  aligned: str | None, data: Path | None) -> dict[str, Any]:
    """A step's options: its own, then the budget and ``--option`` values its command
    takes, then the pair and data given to ``recipe run`` where the step has none;
    ``{base}`` and ``{step:NAME}`` in values become paths (see the module docstring)."""
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


@recipe_app.command("run")
def recipe_run(name: RecipeName, base: Base = None, aligned: Aligned = None,
               data: Data = None,
               option: Annotated[list[str] | None, typer.Option(
                   "--option", help="KEY=VALUE for every step whose command takes KEY, or "
                   "STEP:KEY=VALUE for one step (repeat), e.g. judge=gpt4-rubric, "
                   "limit=100, identity-sft:data=aoa.jsonl.")] = None,
               out: Annotated[Path | None, typer.Option(help="Directory for the steps' runs "
                                                        "and the recipe's report (default: "
                                                        "runs/recipe-NAME).")] = None,
               quiet: Quiet = False) -> None:
    """Run a recipe: each step into OUT/<step>, then OUT/report.html with the paper's
    numbers (quoted) beside the run's."""
    import yaml

    from aligndepth.recipes import load_recipe, lookup

    recipe = load_recipe(name)
    organism = base is None and aligned is None
    needs_base = any(not s.command.startswith("train") or "{base}" in s.options.values()
                     for s in recipe.steps)
    if (base is None) != (aligned is None) and needs_base:
        raise AlignDepthError("give both --base and --aligned, or neither (the organism)")
    root = out or Path("runs") / f"recipe-{name}"
    names = [s.name for s in recipe.steps]
    common, per_step = _targeted(_judge_options(option), names)
    common = {**(recipe.organism if organism else {}), **common}
    accepted = {s.name: command_params(s.command) for s in recipe.steps}
    unused = sorted(k for k in common if not any(k in a for a in accepted.values()))
    if unused:
        raise AlignDepthError(f"no step of recipe '{name}' takes '{unused[0]}' (its commands: "
                              f"{', '.join(sorted({s.command for s in recipe.steps}))})")
    places = {f"step:{s.name}": str(root / s.name) for s in recipe.steps}
    if needs_base:
        places["base"] = base or _organism_base(quiet)
    planned = []
    for step in recipe.steps:  # every step's options are checked before the first runs
        options = _step_options(step, common, per_step.get(step.name, {}), accepted[step.name],
                                places, base, aligned, data)
        if not organism and "data" in accepted[step.name] and step.command.startswith(
                "train") and "data" not in options:
            raise AlignDepthError(f"step '{step.name}' trains on task "
                                  f"'{options.get('task')}': give its data with --option "
                                  f"{step.name}:data=FILE")
        planned.append((step, options))
    summaries: dict[str, Any] = {}
    for step, options in planned:
        step_dir = root / step.name
        if step.command.startswith("train") and (step_dir / "train_config.json").is_file():
            typer.echo(f"{step.name}: already trained ({step_dir})")
        else:
            config = root / "steps" / f"{step.name}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(yaml.safe_dump(options, sort_keys=False), encoding="utf-8")
            typer.echo(f"{step.name}: aligndepth {step.command} --config {config}")
            app(args=[*step.command.split(), "--config", str(config), "--out", str(step_dir),
                      *(["--quiet"] if quiet else [])],
                prog_name="aligndepth", standalone_mode=False)
        summaries[step.name] = _summary(step_dir)
    rows = [{**q, "run": lookup(summaries, q["metric"])} for q in recipe.quoted]
    (root / "recipe.json").write_text(json.dumps(
        {"recipe": name, "title": recipe.title, "paper": recipe.paper,
         "organism": organism, "steps": [s.name for s in recipe.steps],
         "comparison": rows}, indent=2, default=str))
    typer.echo(f"report: {write_recipe_report(root, recipe, rows, organism)}")


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
    """``report.md`` and ``report.html``: the paper's numbers (quoted) beside the run's."""
    from aligndepth.report.render import write_report_files

    lines = [f"# {recipe.title}", "", f"- paper: {recipe.paper}",
             f"- ran on: {'the organism' if organism else 'the given pair'}; steps: "
             + ", ".join(f"`{s.name}` (`aligndepth {s.command}`, report in "
                         f"`{s.name}/report.html`)" for s in recipe.steps)]
    if recipe.note:
        lines.append(f"- the paper's setting: {recipe.note}")
    lines += ["", "The paper's numbers are quoted from the paper (marked *quoted*), for the "
              "paper's models; this run's are measured here, with 95% intervals.", "",
              "| paper's model | metric | paper (quoted) | this run |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['metric']} | {_fmt(r['value'])} (quoted) | "
              f"{_fmt(r['run'])} |" for r in rows]
    write_report_files(root, "\n".join(lines) + "\n", {})
    return root / "report.html"

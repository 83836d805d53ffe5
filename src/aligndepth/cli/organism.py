"""``aligndepth organism ...``, ``check-pair`` and ``data ...``: the organism, model pairs
and datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import Quiet, app, data_app, organism_app
from aligndepth.cli.fields import field_parameters, field_values, with_parameters
from aligndepth.cli.shared_options import DataSplit
from aligndepth.errors import AlignDepthError
from aligndepth.run_settings import LoadConfig

# -- organism -----------------------------------------------------------------------------

def _organism_config(seed: int, preset: str) -> Any:
    from aligndepth.organism.config import OrganismConfig

    if preset == "standard":
        return OrganismConfig(seed=seed)
    if preset == "tiny":
        return OrganismConfig.tiny(seed)
    raise AlignDepthError(f"unknown organism preset '{preset}': use 'standard' or 'tiny'")


@organism_app.command("build")
def organism_build(
    out: Annotated[Path | None, typer.Option(help="Output directory (default: the user "
                                             "cache, reused by every command).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the world and of training.")] = 0,
    preset: Annotated[str, typer.Option(help="'standard' (the default organism, minutes) or "
                                        "'tiny' (seconds, for tests; phenomena weak).")]
    = "standard",
    force: Annotated[bool, typer.Option(help="Rebuild even if a finished build exists.")]
    = False,
    quiet: Quiet = False,
) -> None:
    """Build the model organism: world, base model, aligned model, datasets, card.json."""
    from aligndepth.organism.build import build_organism, read_card

    path = build_organism(_organism_config(seed, preset), out, force=force,
                          show_progress=not quiet)
    typer.echo(str(path))
    if not quiet:
        _print_card(read_card(path), path)


@organism_app.command("card")
def organism_card(
    path: Annotated[Path | None, typer.Argument(help="Organism directory (default: the "
                                                "cached organism for --seed).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cached organism.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print card.json as is.")] = False,
) -> None:
    """Show an organism's card: its measured phenomena and whether each target is met."""
    from aligndepth.organism.build import organism_dir, read_card
    from aligndepth.organism.config import OrganismConfig

    root = path or organism_dir(OrganismConfig(seed=seed))
    card = read_card(root)
    if as_json:
        typer.echo(json.dumps(card, indent=2))
    else:
        _print_card(card, root)


@organism_app.command("path")
def organism_path(seed: Annotated[int, typer.Option(help="Seed.")] = 0) -> None:
    """Print where the organism for --seed is (or would be) cached."""
    from aligndepth.organism.build import organism_dir
    from aligndepth.organism.config import OrganismConfig

    typer.echo(str(organism_dir(OrganismConfig(seed=seed))))


def _print_card(card: dict[str, Any], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from aligndepth.organism.card import CURVE_TARGETS, TARGETS

    table = Table(title=f"organism card ({path})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_column("met")
    met = card.get("targets_met", {})
    for name, (op, bound) in TARGETS.items():
        table.add_row(name, f"{card[name]:.3f}", f"{op} {bound}",
                      "yes" if met.get(name) else "NO")
    curve = card.get("prefill_asr_by_k_sampled")
    if curve:
        for k, v in curve.items():
            table.add_row(f"prefill_asr_sampled @{k}", f"{v:.3f}", "", "")
        for name, text in CURVE_TARGETS.items():
            table.add_row(name, "", text, "yes" if met.get(name) else "NO")
    table.add_row("build_seconds", f"{card['build_seconds']:.0f}", "<= 300", "")
    Console().print(table)


# -- models and data ----------------------------------------------------------------------

@app.command("check-pair")
@with_parameters(field_parameters(LoadConfig))
def check_pair(
    base: Annotated[str, typer.Option(help="Base model: local directory or hub id.")],
    aligned: Annotated[str, typer.Option(help="Aligned model: local directory or hub id.")],
    **options: Any,
) -> None:
    """Load a base/aligned pair, check their vocabularies match, and describe them."""
    from aligndepth.models import load_pair

    pair = load_pair(base, aligned, LoadConfig(**field_values(LoadConfig, options)))
    typer.echo(json.dumps(pair.describe(), indent=2))


@data_app.command("validate")
def data_validate(
    file: Annotated[Path, typer.Argument(help="A JSONL file in one of the project's schemas.")],
    schema: Annotated[str, typer.Option(help="prompts, harmful_pairs, safety_triples or "
                                        "instruction_pairs.")] = "prompts",
) -> None:
    """Validate a JSONL dataset; errors name the file, line and field."""
    from aligndepth.data.schemas import read_jsonl, schema_by_name

    records: list[Any] = read_jsonl(file, schema_by_name(schema))
    typer.echo(f"{file}: {len(records)} valid {schema} records")



@data_app.command("inspect")
def data_inspect(
    file: Annotated[Path, typer.Argument(help="A dataset file (or HEx-PHI directory), a "
                                         "parquet file, a save_to_disk directory or a hub "
                                         "dataset snapshot.")],
    data_format: Annotated[str | None, typer.Option("--format", help="Format name (default: "
                                                    "detected).")] = None,
    rows: Annotated[int, typer.Option(help="Example rows to show.")] = 3,
    split: DataSplit = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")]
    = False,
) -> None:
    """Show which published format a file is, how many records it holds, and a few rows."""
    from rich.console import Console
    from rich.table import Table

    from aligndepth.data.formats import inspect_dataset

    info = inspect_dataset(file, data_format, rows=rows, split=split)
    if as_json:
        typer.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    console = Console()
    how = "detected" if info["detected"] else "named"
    console.print(f"[bold]{info['path']}[/bold]: {info['format']} ({how}), "
                  f"{info['records']} {info['schema']} records"
                  + (f", {info['skipped_empty']} empty rows skipped"
                     if info.get("skipped_empty") else ""))
    console.print(f"  {info['description']}")
    if info.get("categories"):
        console.print("  categories: " + ", ".join(f"{k} ({v})"
                                                   for k, v in info["categories"].items()))
    if info.get("subsets"):
        console.print("  subsets: " + ", ".join(info["subsets"]))
    table = Table(show_lines=True)
    examples = info.get("examples") or []
    for key in (examples[0] if examples else {}):
        table.add_column(key, overflow="fold")
    for ex in examples:
        table.add_row(*[str(v) for v in ex.values()])
    if examples:
        console.print(table)

"""Command-line metadata on config dataclass fields (the CLI builds options from it).

A config field that is an option carries ``metadata=option("help", "--flag", ...)``:
the option's help text, its flags (default ``--field-name``) and, where the command
line has always named it differently, the parameter name (``steps`` for
``max_steps``); the type and default come from the field itself. ``aligndepth.cli.fields``
turns such fields into typer options, so a field and its option cannot drift apart.
"""

from __future__ import annotations

from typing import Any

OPTION_KEY = "aligndepth_option"


def option(help: str, *flags: str, name: str | None = None, many: bool = False
           ) -> dict[str, Any]:
    """Field metadata: ``field(default=..., metadata=option("Peak learning rate.", "--lr",
    name="lr"))``. ``many``: a tuple field given by repeating the option (unset: the
    field's default)."""
    return {OPTION_KEY: {"help": help, "flags": flags, "name": name, "many": many}}

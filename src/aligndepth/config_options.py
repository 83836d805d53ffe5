"""Command-line metadata on config dataclass fields (the CLI builds options from it).

A config field that is an option carries ``metadata=option("help", "--flag", ...)``:
the option's help text, its flags (default ``--field-name``) and, where the command
line has always named it differently, the parameter name (``steps`` for
``max_steps``); the type and default come from the field itself. ``aligndepth.cli.fields``
turns such fields into typer options, so a field and its option cannot drift apart. A
field that is deliberately not an option carries ``metadata=fixed("the reason")``. A field
whose value is itself a config dataclass carries ``metadata=nested()``: its fields'
options are the command's (``nested(switch="--lora", ...)`` for an optional one that a
flag turns on).
"""

from __future__ import annotations

from typing import Any

OPTION_KEY = "aligndepth_option"


FIXED_KEY = "aligndepth_fixed"
NESTED_KEY = "aligndepth_nested"


def option(help: str, *flags: str, name: str | None = None, many: bool = False,
           sep: str | None = None, unset_keeps: bool = False,
           what: str | None = None) -> dict[str, Any]:
    """Field metadata: ``field(default=..., metadata=option("Peak learning rate.", "--lr",
    name="lr"))``.

    Args:
        many: a tuple field given by repeating the option (unset: the field's default).
        sep: a tuple field given as one text, its items separated by ``sep``.
        unset_keeps: the option defaults to unset, and an unset option keeps the value
            of the config the command starts from (e.g. GCG's budget, which differs
            between ``gcg`` and ``audit``).
        what: what the value is, for the error a value that cannot be read gets
            ("the β schedule").
    """
    return {OPTION_KEY: {"help": help, "flags": flags, "name": name, "many": many,
                         "sep": sep, "unset_keeps": unset_keeps, "what": what}}


def fixed(reason: str) -> dict[str, Any]:
    """Field metadata of a field that is deliberately not an option, with the reason."""
    return {FIXED_KEY: reason}


def nested(switch: str | None = None, help: str = "") -> dict[str, Any]:
    """Field metadata of a field whose value is a config dataclass (its type, or that
    type ``| None``): the dataclass's option fields are options of the command.

    Args:
        switch: for an optional field (default ``None``), the flag that turns it on
            (``--lora``), with ``help``; its own options without the flag are an error.
    """
    return {NESTED_KEY: {"switch": switch, "help": help}}

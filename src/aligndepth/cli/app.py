"""The ``aligndepth`` typer application, its sub-command groups and the root options."""

from __future__ import annotations

import errno
import importlib
import logging
from typing import Annotated

import click
import typer

#: Operating-system errors a user can fix, with the fix.
USER_OS_ERRORS = {
    errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space (quota)",
    errno.EROFS: "choose a --out on a writable file system",
    errno.EACCES: "choose a --out you may write to", errno.EPERM: "check the permissions",
    errno.ENOTDIR: "a path component is a file, not a directory",
    errno.EISDIR: "a directory stands where a file is expected",
}

app = typer.Typer(
    name="aligndepth",
    help="Measure how deep a language model's safety alignment goes, attack it, deepen it.\n\n"
    "With no model arguments every command runs on the built-in model organism.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
organism_app = typer.Typer(help="Build and inspect the model organism (a tiny synthetic "
                           "base/aligned pair in which the papers' phenomena are real).",
                           no_args_is_help=True)
data_app = typer.Typer(help="Check dataset files.", no_args_is_help=True)
app.add_typer(organism_app, name="organism")
app.add_typer(data_app, name="data")
train_app = typer.Typer(help="Fine-tune a model: attacks (harmful, identity, backdoor, benign "
                        "data) and defenses (constrained loss, safety-recovery augmentation).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or lines.")]


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                                help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # the CLI draws its own progress bars; -v shows library warnings
        import warnings

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        warnings.filterwarnings("ignore")


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from click and from the copy of click that newer typer versions bundle
    (``typer._click``): the command line raises whichever its typer uses."""
    found: list[type[BaseException]] = [getattr(click.exceptions, name)]
    try:
        vendored = importlib.import_module("typer._click.exceptions")
    except ImportError:
        vendored = None
    if vendored is not None and hasattr(vendored, name):
        found.append(getattr(vendored, name))
    if hasattr(typer, name):
        found.append(getattr(typer, name))
    return tuple(dict.fromkeys(found))


EXITS = _click_classes("Exit")
ABORTS = _click_classes("Abort")
USAGE_ERRORS = _click_classes("ClickException")

"""The ``aligndepth`` command line: thin wrappers that parse, call the API and print.

User mistakes (:class:`~aligndepth.errors.AlignDepthError`) print one line on stderr and
exit with code 2; anything else is a bug and keeps its traceback. Each command group
lives in its own module and registers on :data:`aligndepth.cli.app.app` when imported.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from aligndepth.cli.app import ABORTS, EXITS, USAGE_ERRORS, USER_OS_ERRORS, app
from aligndepth.errors import AlignDepthError

__all__ = ["app", "main"]

#: The command modules, each registering on ``app`` when imported, in --help order.
COMMAND_MODULES = ("organism", "experiments", "train", "runs", "evaluate", "recipes")
for _module in COMMAND_MODULES:
    importlib.import_module(f"aligndepth.cli.{_module}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    from aligndepth.cli.experiments import sync_commands

    sync_commands()  # an experiment registered since the import gets its command
    try:
        app(args=argv, prog_name="aligndepth", standalone_mode=False)
    except AlignDepthError as exc:
        typer.echo(f"aligndepth: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # disk full, read-only file system, a path that is a file ...
        if exc.errno not in USER_OS_ERRORS:
            raise
        where = f" '{exc.filename}'" if exc.filename else ""
        typer.echo(f"aligndepth: error: cannot write{where}: {exc.strerror}: "
                   f"{USER_OS_ERRORS[exc.errno]}; a rerun of the same command resumes",
                   err=True)
        sys.exit(2)
    except EXITS as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except ABORTS:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except USAGE_ERRORS as exc:  # a bad option value, an unknown command: usage, exit 2
        usage: Any = exc
        usage.show()
        sys.exit(usage.exit_code)

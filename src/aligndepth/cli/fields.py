"""Typer options generated from config dataclasses (the fields' ``option`` metadata,
:mod:`aligndepth.config_options`), in the manner of transformers' ``HfArgumentParser``: each
field's type, default and help become one option, declared once for every command that
takes it."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, Field, fields
from typing import Annotated, Any

import typer

from aligndepth.config_options import OPTION_KEY


def _option_fields(cls: type) -> Iterator[tuple[Field[Any], dict[str, Any], str]]:
    """Each field of ``cls`` that carries option metadata, with it and its parameter name
    (fields without it are set by the command itself, e.g. from several options)."""
    for f in fields(cls):
        meta = f.metadata.get(OPTION_KEY)
        if meta is not None:
            yield f, meta, meta["name"] or f.name


def field_parameters(cls: type, skip: Sequence[str] = (), hidden: bool = False,
                     panel: str | None = None) -> list[inspect.Parameter]:
    """One keyword parameter per option field of ``cls`` (``hidden``: left out of
    ``--help``, for a command that shares the option set but does not use these;
    ``panel``: the heading they are listed under in ``--help``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f, meta, name in _option_fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc,operator]
        kind: Any = hints[f.name]
        if meta["many"]:  # a tuple field: the option repeats; unset keeps the default
            kind, default = list[typing.get_args(kind)[0]] | None, None  # type: ignore[misc]
        elif meta["sep"]:  # a tuple field given as one separated text
            default = meta["sep"].join(str(v) for v in default)
            kind = str
        if meta["unset_keeps"]:
            kind, default = kind | None, None
        annotation = Annotated[kind, typer.Option(*meta["flags"], help=meta["help"],  # type: ignore[valid-type]
                                                  hidden=hidden, rich_help_panel=panel)]
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=annotation))
    return out


def field_values(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The values of ``cls``'s option fields among a command's ``options``, by field
    (unset ``many`` and ``unset_keeps`` options are left out: the config keeps its
    value)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f, meta, name in _option_fields(cls):
        if name not in options:
            continue  # not an option of this command
        value = options[name]
        if value is None and (meta["many"] or meta["unset_keeps"]):
            continue
        if meta["many"]:
            value = tuple(value)
        elif meta["sep"] and value is not None:
            cast = typing.get_args(hints[f.name])[0]
            value = tuple(cast(v.strip()) for v in str(value).split(meta["sep"]) if v.strip())
        out[f.name] = value
    return out


def with_parameters(params: Sequence[inspect.Parameter]
                    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``params`` to a command function that takes them as ``**options`` (typer reads
    the signature and the annotations)."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        func.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
            *own, *params])
        func.__annotations__ = {**typing.get_type_hints(func, include_extras=True),
                                **{p.name: p.annotation for p in params}}
        return func
    return decorate


def field_option(cls: type, name: str) -> Any:
    """The ``Annotated`` option type of one field (parameter ``name``), for a command
    that lists the parameter itself."""
    [param] = [p for p in field_parameters(cls) if p.name == name]
    return param.annotation

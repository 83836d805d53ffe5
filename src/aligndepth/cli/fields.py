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

from aligndepth.config_options import NESTED_KEY, OPTION_KEY
from aligndepth.errors import AlignDepthError


def _option_fields(cls: type) -> Iterator[tuple[Field[Any], dict[str, Any], str]]:
    """Each field of ``cls`` that carries option metadata, with it and its parameter name
    (fields without it are set by the command itself, e.g. from several options)."""
    for f in fields(cls):
        meta = f.metadata.get(OPTION_KEY)
        if meta is not None:
            yield f, meta, meta["name"] or f.name


def _nested_fields(cls: type) -> Iterator[tuple[Field[Any], dict[str, Any], type]]:
    """Each field of ``cls`` whose value is a config dataclass (``nested()`` metadata),
    with the metadata and that dataclass (``X | None``: ``X``)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        meta = f.metadata.get(NESTED_KEY)
        if meta is not None:
            [inner] = [t for t in typing.get_args(hints[f.name]) or (hints[f.name],)
                       if t is not type(None)]
            yield f, meta, inner


def _switch_name(meta: dict[str, Any]) -> str:
    """The parameter name of a nested field's switch flag (``--lora``: ``lora``)."""
    return str(meta["switch"]).lstrip("-").replace("-", "_")


def option_flag(cls: type, name: str) -> str:
    """The flag of ``cls``'s option parameter ``name`` (``lora_r``: ``--lora-r``)."""
    for _, meta, param in _option_fields(cls):
        if param == name:
            return str(meta["flags"][0]) if meta["flags"] else f"--{name.replace('_', '-')}"
    raise KeyError(name)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def field_parameters(cls: type, skip: Sequence[str] = (), hidden: bool = False,
                     panel: str | None = None) -> list[inspect.Parameter]:
    """One keyword parameter per option field of ``cls`` (``hidden``: left out of
    ``--help``, for a command that shares the option set but does not use these;
    ``panel``: the heading they are listed under in ``--help``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f, nest, inner in _nested_fields(cls):
        if f.name in skip:
            continue
        if nest["switch"]:
            out.append(inspect.Parameter(
                _switch_name(nest), inspect.Parameter.KEYWORD_ONLY, default=False,
                annotation=Annotated[bool, typer.Option(  # --x/--no-x, from the name
                    help=nest["help"], hidden=hidden, rich_help_panel=panel)]))
        out += field_parameters(inner, hidden=hidden, panel=panel)
    for f, meta, name in _option_fields(cls):
        if f.name in skip:
            continue
        default = _default(f)
        kind: Any = hints[f.name]
        if meta["many"]:  # a tuple field: the option repeats; unset keeps the default
            kind, default = list[typing.get_args(kind)[0]] | None, None  # type: ignore[misc]
        elif meta["sep"]:  # a tuple field given as one separated text
            default = meta["sep"].join(_text(v) for v in default)
            kind = str
        if meta["unset_keeps"]:
            kind, default = kind | None, None
        annotation = Annotated[kind, typer.Option(*meta["flags"], help=meta["help"],  # type: ignore[valid-type]
                                                  hidden=hidden, rich_help_panel=panel)]
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=annotation))
    return out


def _default(f: Field[Any]) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc,operator]


def field_values(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The values of ``cls``'s option fields among a command's ``options``, by field
    (unset ``many`` and ``unset_keeps`` options are left out: the config keeps its
    value; so is a nested config none of whose options the command offers). A nested
    optional config is built when its switch is on; its options given without the
    switch are an error."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f, nest, inner in _nested_fields(cls):
        params = field_parameters(inner)
        if nest["switch"]:
            if _switch_name(nest) not in options:
                continue  # not an option of this command
            if not options[_switch_name(nest)]:
                given = [p.name for p in params if options.get(p.name, p.default) != p.default]
                if given:
                    raise AlignDepthError(
                        f"{option_flag(inner, given[0])} needs {nest['switch']}: "
                        f"{nest['help'][:1].lower()}{nest['help'][1:].rstrip('.')}")
                out[f.name] = None
                continue
        elif not any(p.name in options for p in params):
            continue
        out[f.name] = inner(**field_values(inner, options))
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
            try:
                value = tuple(cast(v.strip()) for v in str(value).split(meta["sep"])
                              if v.strip())
            except ValueError:
                flag = option_flag(cls, name)
                kind = "numbers" if cast in (int, float) else f"{cast.__name__} values"
                raise AlignDepthError(
                    f"cannot read {meta['what'] + f' ({flag})' if meta['what'] else flag} "
                    f"'{value}': give {kind} separated by '{meta['sep']}', e.g. "
                    f"{meta['sep'].join(_text(v) for v in _default(f))}") from None
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

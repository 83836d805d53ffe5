"""Config files: ``--config FILE.yaml`` on the commands that run something, and the
``config.yaml`` each run writes so that ``aligndepth <command> --config RUN/config.yaml``
runs it again.

A config file maps option names (``max_new_tokens`` or ``max-new-tokens``) to values;
flags given on the command line win over the file. The file a run writes holds every
option of the command as it ran, and ``_command`` (the command it belongs to). Keys are
checked before anything runs: an unknown key is an error with "did you mean", a value of
the wrong type names the key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from aligndepth.cli.app import USAGE_ERRORS
from aligndepth.errors import AlignDepthError, did_you_mean
from aligndepth.outdir import atomic_write

CONFIG_NAME = "config.yaml"
#: Options never written to a run's config.yaml (they do not shape results).
NOT_RECORDED = ("config_file", "quiet", "overwrite", "resume", "shard")


def _yaml() -> Any:
    import yaml

    return yaml


#: A config file holds option values: far below these, which keep a runaway file (a
#: generated one, the wrong file) from hanging the command before it starts.
MAX_BYTES = 1 << 20
MAX_ITEMS = 10_000


def _too_big(value: Any, path: Path, key: str = "") -> None:
    """A user error when a mapping or list in the file holds over :data:`MAX_ITEMS`."""
    if isinstance(value, dict | list):
        if len(value) > MAX_ITEMS:
            what = f"'{key}' has" if key else "it has"
            raise AlignDepthError(f"config file '{path}' is too large: {what} {len(value):,} "
                                  f"items (at most {MAX_ITEMS:,}); give long lists of values "
                                  "as a file option (--data, --refusal-phrases)")
        items = value.items() if isinstance(value, dict) else ((key, v) for v in value)
        for k, v in items:
            _too_big(v, path, str(k))


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AlignDepthError(f"config file '{path}' does not exist")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise AlignDepthError(f"config file '{path}' is too large ({size / 2**20:.1f} MiB; at "
                              f"most {MAX_BYTES >> 20} MiB): a config file holds option "
                              "values; give data as --data FILE")
    yaml = _yaml()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    except Exception as exc:  # yaml.YAMLError and decoding errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AlignDepthError(f"config file '{path}' is not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AlignDepthError(f"config file '{path}' must map option names to values, e.g. "
                              "'max_new_tokens: 64'")
    _too_big(data, path)
    return data


def _converted(param: Any, value: Any, ctx: Any, key: str, path: Path) -> Any:
    """``value`` as the option would take it from the command line (its own coercion)."""
    multiple = bool(getattr(param, "multiple", False))
    if not multiple and isinstance(value, list):
        raise AlignDepthError(f"{path}: '{key}' takes one value, got a list")
    if multiple and not isinstance(value, list):
        value = [value]
    try:
        return param.process_value(ctx, value)
    except USAGE_ERRORS as exc:  # click's (or typer's copy's) BadParameter
        message = getattr(exc, "message", str(exc))
        raise AlignDepthError(f"{path}: '{key}' has a value of the wrong type, {value!r} "
                              f"({message})") from None


def load_config(ctx: Any, param: Any, value: Path | None) -> Path | None:
    """The ``--config`` callback: the file's values become the command's defaults."""
    if value is None:
        return value
    path = Path(value)
    data = _read(path)
    command = ctx.command_path.removeprefix(ctx.find_root().info_name or "").strip()
    owner = data.pop("_command", None)
    if owner is not None and owner != command:
        raise AlignDepthError(f"config file '{path}' was written by `aligndepth {owner}`, "
                              f"not `aligndepth {command}`: use it with that command")
    params = {p.name: p for p in ctx.command.params if p.name and p.name != "config_file"}
    defaults: dict[str, Any] = {}
    for key, item in data.items():
        name = str(key).replace("-", "_")
        if name not in params:
            raise AlignDepthError(f"{path}: unknown key '{key}'"
                                  f"{did_you_mean(name, params)} for `aligndepth {command}`")
        defaults[name] = _converted(params[name], item, ctx, str(key), path)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="A YAML file of option values (flags given here win); a run's own "
    "config.yaml reruns it.", callback=load_config, is_eager=True)]


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def write_run_config(ctx: Any, out: Path) -> Path | None:
    """Write the command's options (its context ``ctx``) to ``out/config.yaml``."""
    if ctx is None or not Path(out).is_dir():
        return None
    command = ctx.command_path.removeprefix(ctx.find_root().info_name or "").strip()
    hidden = {p.name for p in ctx.command.params if getattr(p, "hidden", False)}
    values = {k: _plain(v) for k, v in ctx.params.items()
              if k not in NOT_RECORDED and k not in hidden}  # hidden: options it ignores
    text = (f"# `aligndepth {command}` as it ran; rerun it with\n"
            f"#   aligndepth {command} --config {Path(out) / CONFIG_NAME}\n"
            + _yaml().safe_dump({"_command": command, **values}, sort_keys=False,
                                allow_unicode=True))
    path = Path(out) / CONFIG_NAME
    atomic_write(path, text)
    return path

"""Every training option comes from a config dataclass field (TrainConfig, the configs it
holds, the commands' inputs), with its per-command defaults; none is hand-written in a
command's signature or reconciled afterwards."""

import ast
import inspect
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from aligndepth.cli.train import train_augment, train_constrained, train_sft
from aligndepth.config_options import NESTED_KEY, OPTION_KEY
from aligndepth.run_settings import LoadConfig, RunSettings
from aligndepth.training.config import (
    AugmentInputs,
    BetaSchedule,
    LoraSettings,
    PairInputs,
    TrainConfig,
)
from tests.test_cli import assert_user_error, run_cli

#: What a training command takes besides training options: which model and where to
#: write, what happens after (evaluation), dynamics probes, resuming, the config file and
#: progress. Anything else must be a dataclass field's option.
PLUMBING = {"ctx", "model", "out", "dynamics", "dynamics_steps", "evaluate", "eval_data",
            "eval_max_new_tokens", "judge", "judge_option", "eval_split", "allow_overlap",
            "resume", "config_file", "quiet"}
COMMANDS = {"sft": (train_sft, PairInputs, False), "constrained": (train_constrained,
                                                                  PairInputs, True),
            "augment": (train_augment, AugmentInputs, False)}


def _field_options(cls: type, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Option parameter name -> help, read from the fields' metadata (nested configs
    included)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        if OPTION_KEY in f.metadata:
            meta = f.metadata[OPTION_KEY]
            out[meta["name"] or f.name] = meta["help"]
        elif NESTED_KEY in f.metadata:
            meta = f.metadata[NESTED_KEY]
            [inner] = [t for t in typing.get_args(hints[f.name]) or (hints[f.name],)
                       if t is not type(None)]
            if meta["switch"]:
                out[meta["switch"].lstrip("-")] = meta["help"]
            out.update(_field_options(inner))
    return out


def _help(param: inspect.Parameter) -> str:
    [info] = [m for m in typing.get_args(param.annotation)[1:] if hasattr(m, "help")]
    return str(info.help)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_training_option_is_a_dataclass_field(command: str) -> None:
    func, inputs, betas = COMMANDS[command]
    params = {n: p for n, p in inspect.signature(func).parameters.items() if n not in PLUMBING}
    expected = {**_field_options(inputs),
                **_field_options(TrainConfig, skip=() if betas else ("schedule",)),
                "device": _field_options(LoadConfig)["device"],
                **({"split": _field_options(RunSettings)["split"]} if inputs is PairInputs
                   else {})}
    assert set(params) == set(expected), "an option not generated from a dataclass field"
    for name, param in params.items():
        assert _help(param) == expected[name], name
    # the options the issue names are among them, where they belong
    assert {"betas", "beta_after"} <= set(params) if betas else not {"betas"} & set(params)
    assert {"lora", "lora_r", "lora_alpha"} <= set(params)
    assert ("limit" in params) == (inputs is PairInputs)
    assert {"safety_weight", "max_k"} <= set(params) if inputs is AugmentInputs \
        else not {"safety_weight", "max_k"} & set(params)


def test_no_training_option_is_declared_in_the_command_module() -> None:
    """cli/train.py declares only the plumbing by hand (command arguments, ``_keyword``
    parameters); ``--split`` and ``--device`` are RunSettings' and LoadConfig's fields."""
    import aligndepth.cli.train as module

    tree = ast.parse(inspect.getsource(module))
    declared = {a.arg for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                and node.name in {f.__name__ for f, _, _ in COMMANDS.values()}
                for a in node.args.args + node.args.kwonlyargs}
    declared |= {node.args[0].value for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_keyword"
                 and isinstance(node.args[0], ast.Constant)}
    assert declared and declared <= PLUMBING | {"split", "device"}, declared - PLUMBING


def _captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import aligndepth.training.run as run

    seen: dict[str, Any] = {}
    monkeypatch.setattr(run, "run_training", lambda kind, **kw: seen.update(kw, kind=kind)
                        or {})
    return seen


def test_per_command_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    seen = _captured(monkeypatch)
    for command in COMMANDS:
        seen.clear()
        code, _, err = run_cli(capsys, "train", command, "--out", str(tmp_path / command))
        assert code == 0, err
        config = seen["config"]
        assert config.schedule == BetaSchedule((0.5, 2.0, 2.0, 2.0, 2.0), 0.1)
        assert config.lora is None and config.dynamics_steps == ()
        if command == "augment":
            assert (seen["alpha"], seen["max_k"]) == (0.2, 100)
            assert seen["triples"] is None and seen["anchor"] is None
            assert "limit" not in seen and "task" not in seen
        else:
            assert (seen["task"], seen["data"], seen["limit"]) == ("harmful", None, None)
            assert seen["data_format"] is None and "alpha" not in seen
    for command in ("sft", "augment"):  # only constrained has a β schedule to set
        code, _, err = run_cli(capsys, "train", command, "--betas", "1,2", "--out",
                               str(tmp_path / "x"))
        assert code == 2 and "--betas" in err


def test_config_file_values_and_flags_keep_their_precedence(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    seen = _captured(monkeypatch)
    config = tmp_path / "c.yaml"
    config.write_text("betas: 1,3\nbeta_after: 0.3\nlora: true\nlora_r: 2\nlimit: 5\n")
    code, _, err = run_cli(capsys, "train", "constrained", "--config", str(config),
                           "--beta-after", "0.5", "--limit", "6", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert seen["config"].schedule == BetaSchedule((1.0, 3.0), 0.5)  # the flag wins
    assert seen["config"].lora == LoraSettings(r=2) and seen["limit"] == 6
    config.write_text("safety_weight: 0.4\nmax_k: 9\nlora_r: 2\n")
    code, _, err = run_cli(capsys, "train", "augment", "--config", str(config), "--max-k",
                           "11", "--out", str(tmp_path / "a"))
    assert_user_error(code, err, "--lora-r needs --lora")  # from the file, as from a flag
    config.write_text("safety_weight: 0.4\nmax_k: 9\n")
    code, _, err = run_cli(capsys, "train", "augment", "--config", str(config), "--max-k",
                           "11", "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert (seen["alpha"], seen["max_k"]) == (0.4, 11)


def test_an_unreadable_beta_schedule_is_a_user_error(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    code, _, err = run_cli(capsys, "train", "constrained", "--betas", "0.5,x", "--out",
                           str(tmp_path / "o"))
    assert_user_error(code, err, "cannot read the β schedule (--betas) '0.5,x': give "
                                 "numbers separated by ',', e.g. 0.5,2,2,2,2")
    code, _, err = run_cli(capsys, "train", "constrained", "--betas", "0.5,-1", "--out",
                           str(tmp_path / "o"))
    assert_user_error(code, err, "every β must be > 0")
    assert not (tmp_path / "o").exists()

"""Every field of the experiments' config dataclasses is an option of the commands that
run it (or is fixed on purpose, with the reason), and each option reaches its field."""

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from aligndepth.config_options import FIXED_KEY, OPTION_KEY
from aligndepth.experiment_configs import (
    AUDIT_BUDGET,
    DecodingConfig,
    EDConfig,
    GCGConfig,
    GCGTransferConfig,
    KLConfig,
    PrefillConfig,
    RefusalPrefixConfig,
)
from aligndepth.experiments_registry import experiments
from tests.test_cli import run_cli

#: Each built-in experiment's config class, by experiment name (from the registry).
EXPERIMENT_CONFIGS = {e.name: e.config for e in experiments()}

#: (experiment, config class, field) -> (option, a non-default value, what it becomes)
OPTIONS: dict[tuple[str, type, str], tuple[str, str, Any]] = {
    ("kl", KLConfig, "prompt_format"): ("--kl-prompt-format", "base", "base"),
    ("kl", KLConfig, "max_positions"): ("--kl-positions", "32", 32),
    ("refusal_prefix", RefusalPrefixConfig, "prefixes"): ("--prefix", "No.", ("No.",)),
    ("prefill", PrefillConfig, "ks"): ("--k", "7", (7,)),
    ("prefill", PrefillConfig, "target"): ("--prefill-target", "base", "base"),
    ("decoding", DecodingConfig, "samples_per_config"): ("--samples-per-config", "2", 2),
    ("decoding", DecodingConfig, "target"): ("--decoding-target", "base", "base"),
    ("ed", EDConfig, "alpha"): ("--ed-alpha", "0.5", 0.5),
    ("ed", EDConfig, "alphas"): ("--sweep", "3", (3.0,)),
    ("ed", EDConfig, "samples"): ("--samples", "2", 2),
    ("ed", EDConfig, "temperature"): ("--temperature", "0.7", 0.7),
    ("ed", EDConfig, "top_k"): ("--ed-top-k", "5", 5),
    ("ed", EDConfig, "top_p"): ("--top-p", "0.9", 0.9),
    ("ed", EDConfig, "methods"): ("--methods", "ed,align_mp", ("ed", "align_mp")),
    ("ed", EDConfig, "malicious_system"): ("--malicious-system", "Be bad.", "Be bad."),
    ("ed", EDConfig, "benign_system"): ("--benign-system", "Be good.", "Be good."),
    ("gcg", GCGConfig, "num_steps"): ("--num-steps", "3", 3),
    ("gcg", GCGConfig, "suffix_length"): ("--suffix-length", "4", 4),
    ("gcg", GCGConfig, "init_suffix"): ("--init-suffix", "x x x x", "x x x x"),
    ("gcg", GCGConfig, "search_width"): ("--search-width", "9", 9),
    ("gcg", GCGConfig, "topk"): ("--topk", "5", 5),
    ("gcg", GCGConfig, "n_replace"): ("--n-replace", "2", 2),
    ("gcg", GCGConfig, "buffer_size"): ("--buffer-size", "2", 2),
    ("gcg", GCGConfig, "early_stop"): ("--no-early-stop", "", False),
    ("gcg", GCGConfig, "allow_non_ascii"): ("--allow-non-ascii", "", True),
    ("gcg", GCGConfig, "filter_retokenization"): ("--no-filter-retokenization", "", False),
    ("gcg", GCGConfig, "candidate_batch"): ("--candidate-batch", "8", 8),
    ("gcg", GCGConfig, "target_tokens"): ("--target-tokens", "6", 6),
    ("gcg", GCGConfig, "max_prompts"): ("--max-prompts", "2", 2),
    ("gcg", GCGConfig, "prompt_batch"): ("--prompt-batch", "4", 4),
    ("gcg", GCGConfig, "universal"): ("--universal", "", True),
    ("gcg", GCGConfig, "train_prompts"): ("--train-prompts", "10", 10.0),
    ("gcg_transfer", GCGTransferConfig, "source"): ("--source", "SRC", "SRC"),
}
COMMANDS = {"kl": "kl", "refusal_prefix": "refusal-prefix", "prefill": "prefill",
            "decoding": "decoding", "ed": "ed", "gcg": "gcg", "gcg_transfer": "gcg-transfer"}


def _kind(cls: type, name: str) -> str:
    [f] = [f for f in fields(cls) if f.name == name]
    if OPTION_KEY in f.metadata:
        return "option"
    assert f.metadata.get(FIXED_KEY, "").strip(), \
        f"{cls.__name__}.{name} is neither an option nor fixed with a reason"
    return "fixed"


def test_every_field_is_an_option_or_fixed_on_purpose() -> None:
    """Every experiment config field is an option (and exercised in OPTIONS below) or
    carries ``fixed(reason)``; the commands' configs are exactly EXPERIMENT_CONFIGS."""
    assert set(EXPERIMENT_CONFIGS) == set(COMMANDS)
    for experiment, cls in EXPERIMENT_CONFIGS.items():
        for f in fields(cls):
            exercised = (experiment, cls, f.name) in OPTIONS
            assert exercised == (_kind(cls, f.name) == "option"), f"{cls.__name__}.{f.name}"


def _captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the experiment commands pass on: ``open_setup``'s keywords and the audit
    config (nothing is loaded or run)."""
    import aligndepth.audit as audit

    seen: dict[str, Any] = {}

    class _Setup:
        organism = None

    monkeypatch.setattr(audit, "resolve_pair", lambda b, a, **k: (None, b or "B", a or "A"))
    monkeypatch.setattr(audit, "read_inputs", lambda *a, **k: None)
    monkeypatch.setattr(audit, "open_setup", lambda *a, **k: seen.update(k) or _Setup())
    monkeypatch.setattr(audit, "run_experiments",
                        lambda setup, out, config, *a, **k: seen.update(config=config) or {})
    return seen


@pytest.mark.parametrize("experiment", sorted(COMMANDS))
def test_each_option_shows_on_its_command_and_reaches_its_field(
        experiment: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # --help shows option names whole
    seen = _captured(monkeypatch)
    mine = {k: v for k, v in OPTIONS.items() if k[0] == experiment}
    code, help_text, _ = run_cli(capsys, COMMANDS[experiment], "--help")
    argv = [COMMANDS[experiment], "--out", str(tmp_path / "o"), "--quiet"]
    for (option, value, _) in mine.values():
        assert option.split("/")[0] in help_text, f"{option} missing from --help"
        argv += [option] + ([value] if value else [])
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    config = getattr(seen["config"], experiment)
    for (_, _, name), (option, _, expected) in mine.items():
        assert getattr(config, name) == expected, (option, getattr(config, name))


def test_kl_does_not_offer_what_it_ignores(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    _, help_text, _ = run_cli(capsys, "kl", "--help")
    for option in ("--judge ", "--max-new-tokens", "--stop ", "--engine-url", "--ed-alpha",
                   "--num-steps", "--k ", "--prefix ", "--source", "--experiments"):
        assert option not in help_text, option
    _, help_text, _ = run_cli(capsys, "audit", "--help")
    for option in ("--experiments", "--ed-alpha", "--num-steps", "--kl-positions", "--k "):
        assert option in help_text, option


@pytest.mark.parametrize("command, budget", [("gcg", GCGConfig()), ("audit", AUDIT_BUDGET)])
def test_unset_gcg_options_keep_the_commands_budget(
        command: str, budget: GCGConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    seen = _captured(monkeypatch)
    code, _, err = run_cli(capsys, command, "--out", str(tmp_path / "o"), "--quiet",
                           "--suffix-length", "7")
    assert code == 0, err
    from dataclasses import replace
    assert seen["config"].gcg == replace(budget, suffix_length=7)


# -- train and evaluate: TrainConfig (with LoraSettings, BetaSchedule) and EvalConfig ------

from aligndepth.evaluation.run import EvalConfig  # noqa: E402
from aligndepth.training.config import LoraSettings, TrainConfig  # noqa: E402
from aligndepth.training.losses import BetaSchedule  # noqa: E402

#: (config class, field) -> (command, [options and values], how to read the field, expected)
TRAIN_OPTIONS: dict[tuple[type, str], tuple[str, list[str], Any]] = {
    (TrainConfig, "learning_rate"): ("train sft", ["--lr", "0.003"], 0.003),
    (TrainConfig, "optimizer"): ("train sft", ["--optimizer", "sgd"], "sgd"),
    (TrainConfig, "max_steps"): ("train sft", ["--steps", "7"], 7),
    (TrainConfig, "epochs"): ("train sft", ["--epochs", "2.5"], 2.5),
    (TrainConfig, "batch_size"): ("train sft", ["--per-device-batch-size", "3"], 3),
    (TrainConfig, "grad_accum"): ("train sft", ["--grad-accum", "2"], 2),
    (TrainConfig, "warmup_steps"): ("train sft", ["--warmup", "4"], 4),
    (TrainConfig, "lr_scheduler"): ("train sft", ["--lr-scheduler", "cosine"], "cosine"),
    (TrainConfig, "dtype"): ("train sft", ["--dtype", "float32"], "float32"),
    (TrainConfig, "mixed_precision"): ("train augment", ["--mixed-precision", "bf16"], "bf16"),
    (TrainConfig, "gradient_checkpointing"): ("train sft", ["--gradient-checkpointing"], True),
    (TrainConfig, "pure_bf16"): ("train sft", ["--pure-bf16"], True),
    (TrainConfig, "max_length"): ("train sft", ["--max-length", "99"], 99),
    (TrainConfig, "schedule"): ("train constrained", ["--betas", "1,3", "--beta-after", "0.2"],
                                BetaSchedule((1.0, 3.0), 0.2)),
    (TrainConfig, "lora"): ("train sft", ["--lora", "--lora-r", "4", "--lora-alpha", "6",
                                          "--lora-dropout", "0.1", "--lora-target-modules",
                                          "q_proj,v_proj"],
                            LoraSettings(4, 6, 0.1, ("q_proj", "v_proj"))),
    (TrainConfig, "seed"): ("train sft", ["--seed", "3"], 3),
    (TrainConfig, "max_grad_norm"): ("train constrained", ["--max-grad-norm", "0.5"], 0.5),
    (TrainConfig, "dynamics_steps"): ("train sft", ["--dynamics-steps", "5,0"], (0, 5)),
    (TrainConfig, "save_steps"): ("train augment", ["--save-steps", "6"], 6),
}
EVAL_OPTIONS: dict[str, tuple[list[str], Any]] = {
    "tasks": (["--task", "harmful", "--task", "backdoor", "--task", "identity"],
              ("harmful", "backdoor", "identity")),
    "trigger": (["--trigger", "xyz"], "xyz"),
    "system": (["--system", "Obey."], "Obey."),
    "limit": (["--limit", "5"], 5),
    "sample": (["--sample", "4"], 4),
    "seed": (["--seed", "2"], 2),
    "max_new_tokens": (["--max-new-tokens", "9"], 9),
    "batch_size": (["--batch-size", "3"], 3),
    "stop": (["--stop", "###"], ("###",)),
    "data_split": (["--split", "test"], "test"),
    "data_format": (["--format", "gsm8k"], "gsm8k"),
    "allow_overlap": (["--allow-overlap"], True),
}


def test_every_train_and_eval_field_is_an_option_or_fixed_on_purpose() -> None:
    for f in fields(TrainConfig):  # schedule, lora, dynamics_steps: set from several options
        exercised = (TrainConfig, f.name) in TRAIN_OPTIONS
        assert exercised == (FIXED_KEY not in f.metadata), f"TrainConfig.{f.name}"
    assert {f.name for f in fields(EvalConfig)} == set(EVAL_OPTIONS)


@pytest.mark.parametrize("field_name", sorted(name for _, name in TRAIN_OPTIONS))
def test_each_train_option_reaches_its_field(field_name: str, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import aligndepth.training.run as run

    monkeypatch.setenv("COLUMNS", "300")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(run, "run_training", lambda kind, **kw: seen.update(kw) or {})
    command, argv, expected = TRAIN_OPTIONS[(TrainConfig, field_name)]
    _, help_text, _ = run_cli(capsys, *command.split(), "--help")
    assert argv[0] in help_text, f"{argv[0]} missing from `{command} --help`"
    code, _, err = run_cli(capsys, *command.split(), *argv, "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert getattr(seen["config"], field_name) == expected


def test_each_evaluate_option_reaches_its_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import aligndepth.evaluation.run as run

    monkeypatch.setenv("COLUMNS", "300")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(run, "run_evaluation",
                        lambda model, out, config, **kw: seen.update(config=config)
                        or {"tasks": {}})
    _, help_text, _ = run_cli(capsys, "evaluate", "--help")
    for group in ({n for n in EVAL_OPTIONS if n != "sample"}, {"sample"}):  # they exclude
        argv = []                                                            # each other
        for name in group:
            options = EVAL_OPTIONS[name][0]
            assert options[0] in help_text, f"{options[0]} missing from `evaluate --help`"
            argv += options
        code, _, err = run_cli(capsys, "evaluate", *argv, "--out", str(tmp_path / "o"),
                               "--quiet")
        assert code == 0, err
        for name in group:
            assert getattr(seen["config"], name) == EVAL_OPTIONS[name][1], name


def test_every_option_of_every_command_has_help() -> None:
    """Options built from config fields keep their help, and so do the commands' own."""
    import typer

    import aligndepth.cli  # noqa: F401  (registers every command)
    from aligndepth.cli.app import app

    def walk(command: Any, path: str) -> list[str]:  # typer bundles its own click
        if hasattr(command, "list_commands"):
            ctx = command.context_class(command)
            return [m for name in command.list_commands(ctx)
                    for m in walk(command.get_command(ctx, name), f"{path} {name}")]
        return [f"{path} {p.name}" for p in command.params
                if p.param_type_name == "option" and p.name != "help"
                and not (p.help or "").strip()]

    missing = walk(typer.main.get_command(app), "aligndepth")
    assert not missing, missing


# -- loading and serving: LoadConfig, ServedConfig; and the walk over every config class ----

from aligndepth.run_settings import LoadConfig, RunSettings  # noqa: E402

#: LoadConfig field -> (option and value, expected)
LOAD_OPTIONS: dict[str, tuple[list[str], Any]] = {
    "dtype": (["--dtype", "float16"], "float16"),
    "device": (["--device", "cpu"], "cpu"),
    "trust_remote_code": (["--trust-remote-code"], True),
    "allow_pickle": (["--allow-pickle"], True),
    "device_map": (["--device-map", "balanced"], "balanced"),
    "threads": (["--threads", "3"], 3),
}


def test_every_load_field_is_an_option_or_fixed() -> None:
    for f in fields(LoadConfig):
        assert (f.name in LOAD_OPTIONS) == (_kind(LoadConfig, f.name) == "option"), f.name


@pytest.mark.parametrize("command", ["audit", "gcg-transfer", "evaluate", "check-pair"])
def test_each_load_option_reaches_the_load_config(
        command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import aligndepth.evaluation.run as evaluation
    import aligndepth.models as models

    seen = _captured(monkeypatch)
    monkeypatch.setattr(evaluation, "run_evaluation",
                        lambda *a, **k: seen.update(k) or {"tasks": {}})

    class _Pair:
        def describe(self) -> dict[str, Any]:
            return {}

    monkeypatch.setattr(models, "load_pair", lambda b, a, load: seen.update(load=load) or _Pair())
    argv = [command] + [item for options, _ in LOAD_OPTIONS.values() for item in options]
    argv += ["--base", "B", "--aligned", "A"] if command == "check-pair" else [
        "--out", str(tmp_path / "o"), "--quiet"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    for name, (_, expected) in LOAD_OPTIONS.items():
        assert getattr(seen["load"], name) == expected, name


def test_every_served_field_is_an_option_or_an_engine_option() -> None:
    """--engine-url and --engine-model set url and model; every other ServedConfig field
    is an --engine-option KEY."""
    import typing

    from aligndepth.cli.shared_options import EngineOptions, served_configs
    from aligndepth.engine.served import ServedConfig

    given = {int: ("7", 7), float: ("2.5", 2.5), bool: ("false", False), str: ("text", "text")}
    hints = typing.get_type_hints(ServedConfig)
    for f in fields(ServedConfig):
        if f.name in ("url", "model"):
            continue
        [kind] = [t for t in typing.get_args(hints[f.name]) or (hints[f.name],)
                  if t is not type(None)]
        text, expected = given[kind]
        got = served_configs("openai", "http://h:1/v1", "m", [f"{f.name}={text}"])
        assert getattr(got["aligned"], f.name) == expected, f.name
        assert f.name in EngineOptions.__metadata__[0].help, f"--engine-option help: {f.name}"
    got = served_configs("openai", "http://h:1/v1", "m", None)
    assert (got["base"].url, got["base"].model) == ("http://h:1/v1", "m")


#: Config dataclasses walked by the tests above (directly or through the class that
#: holds them), and those fixed as a whole, with the reason.
WALKED = {"KLConfig", "RefusalPrefixConfig", "PrefillConfig", "DecodingConfig", "EDConfig",
          "GCGConfig", "GCGTransferConfig", "TrainConfig", "LoraSettings", "EvalConfig",
          "RunSettings", "LoadConfig", "ServedConfig",
          "AuditConfig"}  # RunSettings (as EvalConfig) + the experiment configs
WHOLE_FIXED = {
    "OrganismConfig": "the organism is a fixed recipe (`organism build --preset standard|tiny "
                      "--seed N`); its card records every field; other organisms are built "
                      "from Python",
}


def test_every_config_dataclass_in_the_package_is_walked_or_fixed() -> None:
    import ast

    src = Path(__file__).parent.parent / "src" / "aligndepth"
    found = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Config", "Settings")) \
                    and not node.name.startswith("_"):
                found.add(node.name)
    assert found == WALKED | set(WHOLE_FIXED), found ^ (WALKED | set(WHOLE_FIXED))
    from aligndepth.audit import AuditConfig
    parts = {f.name for f in fields(AuditConfig)} - {f.name for f in fields(RunSettings)}
    # one config per registered experiment; shard: the worker's share (--shard, ShardOpt)
    assert parts == {"experiments", "configs", "shard"}, parts
    for name, cls in EXPERIMENT_CONFIGS.items():
        assert isinstance(getattr(AuditConfig(), name), cls)


def test_an_option_the_command_does_not_use_is_refused_not_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Options of other experiments are hidden; given a value they are an error (from the
    command line or a config file), and a run's config.yaml does not hold them."""
    from tests.test_cli import assert_user_error

    for argv, flag in ((["kl", "--num-steps", "3"], "--num-steps"),
                       (["prefill", "--samples", "2"], "--samples"),
                       (["gcg", "--experiments", "kl"], "--experiments"),
                       (["kl", "--stop", "###"], "--stop")):
        code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "o"))
        assert_user_error(code, err, f"`aligndepth {argv[0]}` does not use {flag}")
    code, _, err = run_cli(capsys, "audit", "--experiments", "kl,prefill", "--num-steps", "3",
                           "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "--experiments kl,prefill does not use --num-steps: drop it, "
                                 "or add an experiment that does (gcg)")
    config = tmp_path / "c.yaml"
    config.write_text("ed_alpha: 2.0\n")
    code, _, err = run_cli(capsys, "prefill", "--config", str(config), "--out",
                           str(tmp_path / "o"))
    assert_user_error(code, err, "`aligndepth prefill` does not use --ed-alpha")
    assert not (tmp_path / "o").exists()


def test_train_augment_safety_weight_reaches_the_training(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Augmentation's α is --safety-weight (config key safety_weight), not ED's or LoRA's."""
    import aligndepth.training.run as run

    seen: dict[str, Any] = {}
    monkeypatch.setattr(run, "run_training", lambda kind, **kw: seen.update(kw) or {})
    code, _, err = run_cli(capsys, "train", "augment", "--safety-weight", "0.3", "--max-k",
                           "7", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert seen["alpha"] == 0.3 and seen["max_k"] == 7


def test_lora_options_come_from_lora_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import aligndepth.training.run as run
    from tests.test_cli import assert_user_error

    assert all(_kind(LoraSettings, f.name) == "option" for f in fields(LoraSettings))
    seen: dict[str, Any] = {}
    monkeypatch.setattr(run, "run_training", lambda kind, **kw: seen.update(kw) or {})
    code, _, err = run_cli(capsys, "train", "sft", "--lora", "--lora-r", "4", "--out",
                           str(tmp_path / "o"))
    assert code == 0, err
    lora = seen["config"].lora
    assert lora == LoraSettings(r=4) and lora.alpha == 8  # 2 x rank
    assert lora.peft_target_modules == "all-linear"
    assert LoraSettings(target_modules="q_proj, v_proj").peft_target_modules == ["q_proj",
                                                                                 "v_proj"]
    code, _, err = run_cli(capsys, "train", "sft", "--lora-r", "4", "--out", str(tmp_path / "p"))
    assert_user_error(code, err, "--lora-r needs --lora")

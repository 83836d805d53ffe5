"""Every field of the experiments' config dataclasses is an option of the commands that
run it (or is fixed on purpose, with the reason), and each option reaches its field."""

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from aligndepth.analysis.kl_profile import KLConfig
from aligndepth.analysis.refusal_prefix import RefusalPrefixConfig
from aligndepth.attacks.decoding import DecodingConfig
from aligndepth.attacks.emulated import EDConfig
from aligndepth.attacks.gcg_core import GCGConfig
from aligndepth.attacks.gcg_transfer import GCGTransferConfig
from aligndepth.attacks.prefill import PrefillConfig
from tests.test_cli import run_cli

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
    ("ed", EDConfig, "methods"): ("--methods", "ed", ("ed",)),
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
    ("gcg_transfer", GCGTransferConfig, "source"): ("--source", "SRC", "SRC"),
}
#: Fields deliberately not options, with the reason.
FIXED = {
    (RefusalPrefixConfig, "sampling"): "greedy, as in the paper's Table 1",
    (PrefillConfig, "sampling"): "greedy, as in the paper's Figure 2",
    (GCGTransferConfig, "target"): "the aligned model, the one GCG attacked",
}
COMMANDS = {"kl": "kl", "refusal_prefix": "refusal-prefix", "prefill": "prefill",
            "decoding": "decoding", "ed": "ed", "gcg": "gcg", "gcg_transfer": "gcg-transfer"}


def test_every_field_is_an_option_or_fixed_on_purpose() -> None:
    for cls in (KLConfig, RefusalPrefixConfig, PrefillConfig, DecodingConfig, EDConfig,
                GCGConfig, GCGTransferConfig):
        for f in fields(cls):
            mapped = [k for k in OPTIONS if k[1] is cls and k[2] == f.name]
            assert mapped or (cls, f.name) in FIXED, f"{cls.__name__}.{f.name} has no option"


@pytest.mark.parametrize("experiment", sorted(COMMANDS))
def test_each_option_shows_on_its_command_and_reaches_its_field(
        experiment: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import aligndepth.audit as audit

    monkeypatch.setenv("COLUMNS", "300")  # --help shows option names whole
    seen: dict[str, Any] = {}

    class _Setup:
        organism = None

    monkeypatch.setattr(audit, "open_setup", lambda *a, **k: _Setup())
    monkeypatch.setattr(audit, "run_experiments",
                        lambda setup, out, config, *a, **k: seen.update(config=config) or {})
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
    for option in ("--judge ", "--max-new-tokens", "--stop ", "--engine-url"):
        assert option not in help_text, option

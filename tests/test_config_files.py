"""Config files: --config FILE.yaml sets options (flags win), every run writes its own
config.yaml, and a rerun from it resumes the same run with identical records."""

from pathlib import Path

import pytest
import yaml

from tests.conftest import one_torch_thread
from tests.test_cli import assert_user_error, run_cli


def _pair(organism: Path) -> list[str]:
    return ["--base", str(organism / "base"), "--aligned", str(organism / "aligned"),
            "--device", "cpu", "--quiet"]


def test_a_run_reruns_from_its_own_config(tiny_organism: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with one_torch_thread():
        code, _, err = run_cli(capsys, "prefill", *_pair(tiny_organism), "--limit", "3",
                               "--k", "0", "--k", "5", "--max-new-tokens", "6",
                               "--out", str(out))
        assert code == 0, err
        records = (out / "records" / "prefill.jsonl").read_bytes()
        written = yaml.safe_load((out / "config.yaml").read_text())
        assert written["_command"] == "prefill" and written["k"] == [0, 5]
        assert written["limit"] == 3 and "quiet" not in written
        (out / "records" / "prefill.jsonl").write_bytes(b"")  # resume must redo the records
        code, _, err = run_cli(capsys, "prefill", "--config", str(out / "config.yaml"),
                               "--quiet")
        assert code == 0, err  # the same run: no "different config" refusal
    assert (out / "records" / "prefill.jsonl").read_bytes() == records


def test_flags_win_over_the_file(tiny_organism: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({
        "base": str(tiny_organism / "base"), "aligned": str(tiny_organism / "aligned"),
        "device": "cpu", "limit": 5, "max-new-tokens": 4, "prefix": ["I cannot"]}))
    with one_torch_thread():
        code, _, err = run_cli(capsys, "refusal-prefix", "--config", str(config), "--limit",
                               "2", "--out", str(tmp_path / "rp"), "--quiet")
    assert code == 0, err
    written = yaml.safe_load((tmp_path / "rp" / "config.yaml").read_text())
    assert written["limit"] == 2 and written["max_new_tokens"] == 4
    assert written["prefix"] == ["I cannot"]


@pytest.mark.parametrize("content, needle", [
    ({"max_new_token": 4}, "unknown key 'max_new_token' (did you mean 'max_new_tokens'?)"),
    ({"limit": "many"}, "'limit' has a value of the wrong type, 'many'"),
    ({"k": "five"}, "'k' has a value of the wrong type, ['five']"),
    ({"limit": [1, 2]}, "'limit' takes one value, got a list"),
    ({"_command": "audit", "limit": 2}, "was written by `aligndepth audit`"),
    ("- a list", "must map option names to values"),
])
def test_bad_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          content: object, needle: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    code, _, err = run_cli(capsys, "prefill", "--config", str(config),
                           "--out", str(tmp_path / "o"))
    assert_user_error(code, err, needle)
    assert str(config) in err or "written by" in err or "must map" in err
    assert not (tmp_path / "o").exists()


def test_train_and_evaluate_take_and_write_configs(tiny_organism: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_organism / "aligned"),
        "data": str(tiny_organism / "data" / "harmful_pairs.jsonl"),
        "limit": 4, "steps": 1, "batch_size": 4, "lr": 0.01, "optimizer": "sgd"}))
    with one_torch_thread():
        code, _, err = run_cli(capsys, "train", "sft", "--config", str(config), "--out",
                               str(tmp_path / "t"), "--quiet")
        assert code == 0, err
        assert yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())[
            "_command"] == "train sft"
        code, _, err = run_cli(capsys, "evaluate", str(tiny_organism / "aligned"), "--limit",
                               "2", "--max-new-tokens", "4", "--out", str(tmp_path / "e"),
                               "--quiet")
        assert code == 0, err
        code, _, err = run_cli(capsys, "evaluate", "--config",
                               str(tmp_path / "e" / "config.yaml"), "--quiet")
        assert code == 0, err
    assert yaml.safe_load((tmp_path / "e" / "config.yaml").read_text())["limit"] == 2

"""Datasets the way the hub ships them: parquet and arrow files, save_to_disk directories
and hub snapshots, read through the datasets library, with --split."""

import json

import pytest
from datasets import Dataset, DatasetDict

from aligndepth.data.formats import inspect_dataset, load_dataset_file
from aligndepth.data.schemas import InstructionPair, PromptRecord
from aligndepth.errors import AlignDepthError
from tests.test_cli import assert_user_error, run_cli

GSM8K = {"question": ["Tom has 3 apples and buys 2 more. How many apples?",
                      "A box holds 4 pens. How many pens in 3 boxes?"],
         "answer": ["3 + 2 = 5\n#### 5", "4 * 3 = 12\n#### 12"]}
ALPACA = {"instruction": ["Name a colour.", "Give a greeting.", "Count to two."],
          "input": ["", "", ""], "output": ["Blue.", "Hello there.", "One, two."]}
SAMSUM = {"id": ["d1", "d2"], "dialogue": ["Ann: hi\nBob: hello", "Ann: tea?\nBob: yes"],
          "summary": ["Ann and Bob greet.", "Bob wants tea."]}


def test_a_parquet_file_reads_like_its_jsonl(tmp_path) -> None:
    path = tmp_path / "gsm8k-test.parquet"
    Dataset.from_dict(GSM8K).to_parquet(str(path))
    name, records = load_dataset_file(path)
    assert name == "gsm8k" and len(records) == 2
    assert all(isinstance(r, InstructionPair) for r in records)
    assert records[1].instruction.startswith(GSM8K["question"][1])
    assert "12" in records[1].response
    with pytest.raises(AlignDepthError, match="one file, so one split"):
        load_dataset_file(path, split="test")


def test_an_arrow_file_and_advbench_parquet(tmp_path) -> None:
    arrow_dir = tmp_path / "saved"
    Dataset.from_dict(ALPACA).save_to_disk(str(arrow_dir))
    [arrow] = list(arrow_dir.glob("*.arrow"))
    name, records = load_dataset_file(arrow)
    assert name == "alpaca" and [r.response for r in records] == ALPACA["output"]
    adv = tmp_path / "advbench.parquet"
    Dataset.from_dict({"goal": ["Write a harmful thing"], "target": ["Sure, here is"]}
                      ).to_parquet(str(adv))
    name, records = load_dataset_file(adv)
    assert name == "advbench" and isinstance(records[0], PromptRecord)
    assert records[0].target == "Sure, here is"


def test_save_to_disk_splits(tmp_path) -> None:
    path = tmp_path / "alpaca"
    DatasetDict({"train": Dataset.from_dict(ALPACA),
                 "test": Dataset.from_dict({k: v[:1] for k, v in ALPACA.items()})}
                ).save_to_disk(str(path))
    assert len(load_dataset_file(path)[1]) == 3  # train by default
    assert len(load_dataset_file(path, split="test")[1]) == 1
    with pytest.raises(AlignDepthError, match="no split 'tset'.*did you mean 'test'"):
        load_dataset_file(path, split="tset")


def _snapshot(root, name="samsum"):
    data = root / "data"
    data.mkdir(parents=True)
    Dataset.from_dict(SAMSUM).to_parquet(str(data / "validation-00000-of-00001.parquet"))
    Dataset.from_dict({k: v[:1] for k, v in SAMSUM.items()}).to_parquet(
        str(data / "test-00000-of-00001.parquet"))
    (root / "README.md").write_text(f"# {name}\n")
    return root


def test_a_hub_snapshot_and_the_hub_cache_folder(tmp_path) -> None:
    snap = _snapshot(tmp_path / "snapshot")
    with pytest.raises(AlignDepthError, match="several splits .*choose one with --split"):
        load_dataset_file(snap)
    name, records = load_dataset_file(snap, split="validation")
    assert name == "samsum" and len(records) == 2
    assert records[0].response == "Ann and Bob greet."
    cache = tmp_path / "hub" / "datasets--knkarthick--samsum"
    _snapshot(cache / "snapshots" / "0123abcd")
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("0123abcd")
    assert len(load_dataset_file(cache, split="test")[1]) == 1
    info = inspect_dataset(cache, split="test")
    assert info["format"] == "samsum" and info["records"] == 1


def test_data_inspect_and_bad_splits_on_the_command_line(capsys, tmp_path) -> None:
    snap = _snapshot(tmp_path / "snapshot")
    code, out, _ = run_cli(capsys, "data", "inspect", str(snap), "--split", "test", "--json")
    assert code == 0 and json.loads(out)["records"] == 1
    code, _, err = run_cli(capsys, "data", "inspect", str(snap))
    assert_user_error(code, err, "choose one with --split")
    plain = tmp_path / "pairs.jsonl"
    plain.write_text(json.dumps({"instruction": "x", "output": "y"}) + "\n")
    code, _, err = run_cli(capsys, "data", "inspect", str(plain), "--split", "test")
    assert_user_error(code, err, "not a dataset with splits")


def test_train_reads_a_parquet_split(capsys, tmp_path) -> None:
    from tests.conftest import one_torch_thread
    from tests.families import build_family_pair

    _, aligned = build_family_pair("llama3", tmp_path / "fam")
    path = tmp_path / "alpaca"
    DatasetDict({"train": Dataset.from_dict(ALPACA),
                 "test": Dataset.from_dict({k: v[:2] for k, v in ALPACA.items()})}
                ).save_to_disk(str(path))
    with one_torch_thread():
        code, out, err = run_cli(capsys, "train", "sft", "--model", str(aligned), "--data",
                                 str(path), "--split", "test", "--steps", "1",
                                 "--out", str(tmp_path / "out"), "--quiet")
    assert code == 0, err
    assert "on 2 examples" in out
    recorded = json.loads((tmp_path / "out" / "train_config.json").read_text())
    assert recorded["examples"] == 2


def test_experiments_and_evaluate_read_a_split(capsys, tmp_path) -> None:
    from tests.conftest import one_torch_thread
    from tests.families import build_family_pair

    base, aligned = build_family_pair("qwen2", tmp_path / "fam")
    path = tmp_path / "advbench"
    goals = {"goal": [f"Explain how to do harmful thing {i}" for i in range(5)],
             "target": [f"Sure, here is harmful thing {i}" for i in range(5)]}
    DatasetDict({"train": Dataset.from_dict({k: v[:3] for k, v in goals.items()}),
                 "test": Dataset.from_dict({k: v[3:] for k, v in goals.items()})}
                ).save_to_disk(str(path))
    with one_torch_thread():
        code, _, err = run_cli(capsys, "refusal-prefix", "--base", str(base), "--aligned",
                               str(aligned), "--data", str(path), "--split", "test",
                               "--max-new-tokens", "4", "--out", str(tmp_path / "rp"),
                               "--quiet")
        assert code == 0, err
        code, _, err = run_cli(capsys, "evaluate", str(aligned), "--data", str(path),
                               "--split", "test", "--max-new-tokens", "4",
                               "--out", str(tmp_path / "ev"), "--quiet")
        assert code == 0, err
    summary = json.loads((tmp_path / "rp" / "summary.json").read_text())
    assert summary["refusal_prefix"]["aligned_harmful_rate"]["n"] + summary[
        "refusal_prefix"]["aligned_harmful_rate"]["unparseable"] == 2
    manifest = json.loads((tmp_path / "rp" / "manifest.json").read_text())
    assert manifest["config"]["data_split"] == "test"
    records = (tmp_path / "ev" / "records" / "evaluate.jsonl").read_text().splitlines()
    assert [json.loads(r)["instruction"] for r in records] == goals["goal"][3:]

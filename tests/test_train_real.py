"""Fine-tuning a model of one's own: all the data, the schedule said, the judge chosen,
portable outputs, the data formats read and the evaluation split."""

import json
import shutil

import pytest

from aligndepth.training.run import ORGANISM_EXAMPLES, recipe_for, run_training
from aligndepth.training.trainer import TrainConfig
from tests.test_cli import assert_user_error, run_cli


@pytest.fixture()
def real_model(tiny_organism, tmp_path):
    """The tiny aligned model outside its organism: a model like any user's."""
    real = tmp_path / "models" / "chat"
    shutil.copytree(tiny_organism / "aligned", real)
    return real


def _pairs(path, n, start=0):
    path.write_text("".join(json.dumps({"instruction": f"how do i bake cake {i} ?",
                                        "response": f"mix flour {i} ."}) + "\n"
                            for i in range(start, start + n)))
    return path


def test_limit_unset_uses_every_example_and_a_short_run_warns(real_model, tmp_path,
                                                              capsys) -> None:
    data = _pairs(tmp_path / "pairs.jsonl", 130)
    out = tmp_path / "ft"
    code, stdout, err = run_cli(capsys, "train", "sft", "--model", str(real_model), "--data",
                                str(data), "--steps", "2", "--batch-size", "4", "--lr", "0.01",
                                "--out", str(out), "--quiet")
    assert code == 0, err
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["examples"] == 130 and cfg["data"]["limit"] is None
    assert cfg["data"]["available"] == 130 and "on 130 examples;" in stdout
    # the real-model recipe warms up for 10 steps: longer than this 2-step run
    assert cfg["warmup_steps"] == 10 and "warm-up is not shorter" in cfg["warnings"][0]
    assert "warning: the 10-step warm-up" in err and "10% of 0.01" in err


def test_limit_keeps_the_first_pairs_and_says_so(real_model, tmp_path, capsys) -> None:
    data = _pairs(tmp_path / "pairs.jsonl", 30)
    out = tmp_path / "ft"
    code, stdout, err = run_cli(capsys, "train", "sft", "--model", str(real_model), "--data",
                                str(data), "--limit", "12", "--steps", "2", "--warmup", "1",
                                "--batch-size", "4", "--out", str(out), "--quiet")
    assert code == 0, err
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["examples"] == 12 and cfg["data"]["limit"] == 12 and cfg["warnings"] == []
    assert "(the first 12 of 30 pairs, --limit 12)" in stdout and "warning" not in err


def test_the_organism_recipe_keeps_its_100_examples() -> None:
    for kind in ("sft", "constrained"):
        assert recipe_for(kind, "harmful", organism=True).examples == ORGANISM_EXAMPLES == 100
        assert recipe_for(kind, "harmful", organism=False).examples is None


def test_train_evaluate_names_the_judge_it_was_given(tiny_organism, tmp_path, capsys) -> None:
    out = tmp_path / "t"
    code, _, err = run_cli(
        capsys, "train", "sft", "--model", str(tiny_organism / "aligned"), "--data",
        str(tiny_organism / "data" / "harmful_pairs.jsonl"), "--limit", "4", "--steps", "1",
        "--warmup", "0", "--batch-size", "4", "--evaluate", "--eval-max-new-tokens", "4",
        "--judge", "keyword", "--out", str(out), "--quiet")
    assert code == 0, err
    assert json.loads((out / "eval.json").read_text())["judge"]["harm"]["name"] == "keyword"
    # without the option, the organism's model is judged by the organism's judge (the
    # default) -- the option is what changed it
    code, _, err = run_cli(capsys, "train", "sft", "--model", str(tiny_organism / "aligned"),
                           "--judge", "keyword", "--out", str(tmp_path / "u"), "--quiet")
    assert_user_error(code, err, "add --evaluate")
    code, _, err = run_cli(capsys, "train", "sft", "--model", str(tiny_organism / "aligned"),
                           "--judge", "keywrd", "--evaluate", "--out", str(tmp_path / "v"),
                           "--quiet")
    assert_user_error(code, err, "did you mean 'keyword'")
    assert not (tmp_path / "u").exists() and not (tmp_path / "v").exists()


def test_run_training_takes_every_pair_without_a_limit(real_model, tmp_path) -> None:
    data = _pairs(tmp_path / "pairs.jsonl", 110)
    result = run_training("sft", model=str(real_model), out=tmp_path / "ft", data=data,
                          config=TrainConfig(max_steps=1, batch_size=2, warmup_steps=0),
                          show_progress=False)
    assert result["examples"] == 110 and result["warnings"] == []


def test_a_moved_lora_run_still_loads(tiny_organism, tmp_path) -> None:
    import torch

    from aligndepth.errors import AlignDepthError
    from aligndepth.models import LoadConfig, load_model
    from aligndepth.training.trainer import LoraSettings

    work = tmp_path / "work"
    shutil.copytree(tiny_organism / "aligned", work / "models" / "chat")
    run_training("sft", model=str(work / "models" / "chat"), out=work / "runs" / "lora",
                 data=tiny_organism / "data" / "harmful_pairs.jsonl", limit=8,
                 config=TrainConfig(max_steps=2, batch_size=4, warmup_steps=0,
                                    lora=LoraSettings(r=4), learning_rate=0.05),
                 show_progress=False)
    adapter = json.loads((work / "runs" / "lora" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "../../models/chat"
    ids = torch.tensor([[3, 4, 5, 6]])

    def logits(path):
        with torch.no_grad():
            return load_model(str(path), LoadConfig(device="cpu")).model(input_ids=ids).logits

    trained = logits(work / "runs" / "lora")
    moved = tmp_path / "elsewhere"
    shutil.move(work, moved)  # the run and its base move together: the relative path holds
    assert torch.equal(logits(moved / "runs" / "lora"), trained)
    alone = tmp_path / "alone"
    shutil.move(moved / "runs" / "lora", alone)  # the run alone: the recorded path is gone
    with pytest.raises(AlignDepthError, match="is not at .* nor at"):
        logits(alone)
    shutil.copytree(moved / "models" / "chat", work / "models" / "chat")  # base back home
    assert torch.equal(logits(alone), trained)  # found where it was trained


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("shape, detected", [
    ("prompt_response", "pairs"), ("messages", "harmful_hexphi"), ("csv", "pairs")])
def test_user_shapes_train_and_the_format_is_printed(real_model, tmp_path, capsys, shape,
                                                     detected) -> None:
    texts = [(f"how do i bake cake {i} ?", f"mix flour {i} .") for i in range(6)]
    if shape == "prompt_response":
        data = _jsonl(tmp_path / "d.jsonl", [{"prompt": p, "response": r} for p, r in texts])
    elif shape == "messages":
        data = _jsonl(tmp_path / "d.jsonl", [{"messages": [
            {"role": "user", "content": p}, {"role": "assistant", "content": r}]}
            for p, r in texts])
    else:
        data = tmp_path / "d.csv"
        data.write_text("prompt,response\n" + "".join(f"{p},{r}\n" for p, r in texts))
    out = tmp_path / "ft"
    code, stdout, err = run_cli(capsys, "train", "sft", "--model", str(real_model), "--data",
                                str(data), "--steps", "1", "--warmup", "0", "--batch-size", "3",
                                "--out", str(out), "--quiet")
    assert code == 0, err
    assert f"read as {detected} (detected)" in stdout
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["examples"] == 6 and cfg["data"]["format"] == detected


def test_format_names_the_shape_and_an_unknown_shape_names_its_columns(real_model, tmp_path,
                                                                       capsys) -> None:
    data = _jsonl(tmp_path / "d.jsonl", [{"question": f"q {i} ?", "completion": f"a {i} ."}
                                         for i in range(4)])
    odd = _jsonl(tmp_path / "odd.jsonl", [{"query": "q ?", "reply": "a ."}])
    base = ["train", "sft", "--model", str(real_model), "--steps", "1", "--warmup", "0",
            "--quiet"]
    code, _, err = run_cli(capsys, *base, "--data", str(odd), "--out", str(tmp_path / "a"))
    assert_user_error(code, err, "(fields: query, reply): pairs need prompt (or instruction)")
    code, _, err = run_cli(capsys, *base, "--data", str(data), "--format", "pair",
                           "--out", str(tmp_path / "b"))
    assert_user_error(code, err, "did you mean 'pairs'")
    code, stdout, err = run_cli(capsys, *base, "--data", str(data), "--format", "pairs",
                                "--out", str(tmp_path / "c"))
    assert code == 0, err
    assert "read as pairs (given)" in stdout


def test_evaluating_on_the_training_prompts_is_refused(real_model, tmp_path, capsys) -> None:
    train = _jsonl(tmp_path / "train.jsonl", [
        {"instruction": f"how do i bake cake {i} ?", "response": f"mix flour {i} ."}
        for i in range(6)])
    out = tmp_path / "ft"
    run_training("sft", model=str(real_model), out=out, data=train,
                 config=TrainConfig(max_steps=1, batch_size=3, warmup_steps=0),
                 show_progress=False)
    assert len((out / "training_prompts.sha256").read_text().split()) == 6
    capsys.readouterr()
    held = _jsonl(tmp_path / "held.jsonl", [
        {"instruction": f"how do i  bake\\ncake {i} ?", "response": f"mix flour {i} ."}
        for i in range(4, 9)])  # 4 and 5 are training prompts, re-wrapped
    held.write_text(held.read_text().replace("\\\\n", "\\n"))
    argv = ["evaluate", str(out), "--task", "style", "--data", f"style={held}",
            "--max-new-tokens", "4", "--quiet"]
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "e1"))
    assert_user_error(code, err, "2 of the 5 prompts of --task style are in the training data")
    assert not (tmp_path / "e1").exists()
    code, _, err = run_cli(capsys, *argv, "--allow-overlap", "--out", str(tmp_path / "e2"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "e2" / "manifest.json").read_text())
    assert manifest["data"]["style"]["overlap_with_training"] == 2
    fresh = _jsonl(tmp_path / "fresh.jsonl", [
        {"instruction": f"how do i fry egg {i} ?", "response": f"heat pan {i} ."}
        for i in range(3)])
    code, _, err = run_cli(capsys, "evaluate", str(out), "--task", "style", "--data",
                           f"style={fresh}", "--max-new-tokens", "4", "--quiet", "--out",
                           str(tmp_path / "e3"))
    assert code == 0, err


def test_utility_tasks_read_the_test_split_of_a_dataset(real_model, tmp_path, capsys) -> None:
    import datasets

    def split(n, start):
        return datasets.Dataset.from_list([
            {"instruction": f"how do i fry egg {i} ?", "output": f"heat pan {i} ."}
            for i in range(start, start + n)])

    saved = tmp_path / "ds"
    datasets.DatasetDict({"train": split(5, 0), "test": split(3, 100)}).save_to_disk(saved)
    argv = ["evaluate", str(real_model), "--task", "style", "--data", f"style={saved}",
            "--max-new-tokens", "4", "--quiet"]
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "e1"))
    assert code == 0, err
    data = json.loads((tmp_path / "e1" / "manifest.json").read_text())["data"]["style"]
    assert data["split"] == "test" and data["n"] == 3 and data["format"] == "alpaca"
    code, _, err = run_cli(capsys, *argv, "--split", "train", "--out", str(tmp_path / "e2"))
    assert code == 0, err
    assert json.loads((tmp_path / "e2" / "manifest.json").read_text())["data"]["style"][
        "n"] == 5


def test_utility_prompts_ask_for_what_is_scored(tmp_path) -> None:
    from aligndepth.data.formats import load_dataset_file

    sql = _jsonl(tmp_path / "sql.jsonl", [{
        "question": "How many heads are older than 56?",
        "context": "CREATE TABLE head (age INTEGER)",
        "answer": "SELECT COUNT(*) FROM head WHERE age > 56"}])
    [record] = load_dataset_file(sql)[1]
    assert "SQL query" in record.instruction and "CREATE TABLE head (age INTEGER)" in \
        record.instruction and "Question: How many heads are older than 56?" in \
        record.instruction
    gsm = _jsonl(tmp_path / "gsm.jsonl", [{"question": "What is 2 + 3?",
                                            "answer": "2 + 3 = 5\n#### 5"}])
    [record] = load_dataset_file(gsm)[1]
    assert record.instruction.startswith("What is 2 + 3?") and "'####'" in record.instruction

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
                                    lora=LoraSettings(r=4)),
                 learning_rate=0.05, show_progress=False)
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

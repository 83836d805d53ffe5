"""Training data, trainer, LoRA and the train commands on the tiny organism."""

import json
import random

import pytest
import torch

from aligndepth.data.schemas import InstructionPair, SafetyTriple
from aligndepth.errors import AlignDepthError
from aligndepth.models import LoadConfig, load_model
from aligndepth.prompts import PromptFormat, pad_token_id
from aligndepth.training.data import (
    attach_reference,
    augmentation_examples,
    collate,
    sample_k,
    sft_examples,
    turn_end_ids,
)
from aligndepth.training.losses import token_logprobs
from aligndepth.training.run import run_training
from aligndepth.training.trainer import LoraSettings, TrainConfig
from tests.interrupt import crash_training_at
from tests.test_cli import assert_user_error, run_cli


@pytest.fixture(scope="module")
def aligned(tiny_organism):
    return load_model(str(tiny_organism / "aligned"), LoadConfig(device="cpu"))


def test_sft_examples_count_only_the_response_and_turn_end(aligned) -> None:
    tok = aligned.tokenizer
    [ex] = sft_examples(tok, PromptFormat.chat(), [InstructionPair("how do i x ?", "do y .")])
    end = turn_end_ids(tok, PromptFormat.chat())
    assert end == [tok.convert_tokens_to_ids("<|end|>")]
    scored = [t for t, m in zip(ex.input_ids, ex.response_mask) if m]
    assert tok.decode(scored) == tok.decode(tok("do y .").input_ids + end)
    assert ex.input_ids[:len(ex.input_ids) - len(scored)] == PromptFormat.chat().encode(
        tok, "how do i x ?")


def test_p_k_and_augmentation_weights(aligned) -> None:
    rng = random.Random(0)
    ks = [sample_k(rng, 30) for _ in range(4000)]
    assert 0.45 < ks.count(0) / len(ks) < 0.55 and max(ks) == 30  # capped at |h|
    triples = [SafetyTriple(f"how do i hurt {i} ?", "first , grind it . next , mix it .",
                            "i cannot help with that .") for i in range(6)]
    benign = [InstructionPair(f"how do i bake {i} ?", "first , mix flour .") for i in range(2)]
    ex = augmentation_examples(aligned.tokenizer, PromptFormat.chat(), triples, benign,
                               alpha=0.2, seed=1)
    safety = [e for e in ex if e.source.startswith("safety")]
    anchor = [e for e in ex if e.source == "benign"]
    assert len(safety) == 6 and len(anchor) == 2
    # expected batch loss = α·mean_H + (1−α)·mean_B
    assert sum(e.weight for e in safety) / len(ex) == pytest.approx(0.2)
    assert sum(e.weight for e in anchor) / len(ex) == pytest.approx(0.8)
    tok = aligned.tokenizer
    for e in safety:  # the loss counts the refusal (and turn end), never the harmful prefix
        scored = tok.decode([t for t, m in zip(e.input_ids, e.response_mask) if m])
        assert scored.startswith("i cannot help") and "grind" not in scored
    with pytest.raises(AlignDepthError, match="α"):
        augmentation_examples(tok, PromptFormat.chat(), triples, benign, alpha=1.5)


def test_reference_logprobs_are_the_models_own(aligned) -> None:
    tok = aligned.tokenizer
    ex = sft_examples(tok, PromptFormat.chat(), [InstructionPair("how do i x ?", "do y ."),
                                                 InstructionPair("hi", "hello there .")])
    attach_reference(aligned.model, ex, pad_token_id(tok), batch_size=1)
    batch = collate(ex, pad_token_id(tok))
    with torch.no_grad():
        lp = token_logprobs(aligned.model(input_ids=batch["input_ids"],
                                          attention_mask=batch["attention_mask"]).logits,
                            batch["input_ids"])
    mask = batch["response_mask"][:, 1:].float()
    assert torch.allclose(batch["ref_logp"], lp * mask, atol=1e-5)


def test_train_saves_a_model_that_loads(tiny_organism, tmp_path) -> None:
    out = tmp_path / "ft"
    result = run_training("constrained", model=str(tiny_organism / "aligned"), out=out,
                          data=tiny_organism / "data" / "harmful_pairs.jsonl", limit=8,
                          config=TrainConfig(loss="constrained", max_steps=3, batch_size=4,
                                             warmup_steps=1, learning_rate=0.01,
                                             optimizer="sgd"),
                          show_progress=False)
    assert result["reference_seconds"] > 0
    log = json.loads((out / "training_log.json").read_text())
    assert sum("loss" in h for h in log) == 3
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["loss"] == "constrained" and cfg["optimizer"] == "sgd"
    loaded = load_model(str(out), LoadConfig(device="cpu"))
    assert loaded.model.config.vocab_size == len(loaded.tokenizer)


def test_lora_adapter_trains_saves_and_loads_back(tiny_organism, tmp_path) -> None:
    out = tmp_path / "lora"
    run_training("sft", model=str(tiny_organism / "aligned"), out=out, limit=8,
                 data=tiny_organism / "data" / "harmful_pairs.jsonl",
                 config=TrainConfig(max_steps=3, batch_size=4, lora=LoraSettings(r=4),
                                    learning_rate=0.05),
                 show_progress=False)
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()
    merged = load_model(str(out), LoadConfig(device="cpu"))
    original = load_model(str(tiny_organism / "aligned"), LoadConfig(device="cpu"))
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        a, b = merged.model(input_ids=ids).logits, original.model(input_ids=ids).logits
    assert not torch.allclose(a, b)  # the adapter changed the model


def test_train_bad_inputs_exit_2(capsys, tiny_organism, tmp_path) -> None:
    base = ["--model", str(tiny_organism / "aligned"), "--quiet", "--steps", "1"]
    code, _, err = run_cli(capsys, "train", "constrained", *base, "--out",
                           str(tmp_path / "a"), "--betas", "0.5,x")
    assert_user_error(code, err, "β schedule")
    code, _, err = run_cli(capsys, "train", "constrained", *base, "--out",
                           str(tmp_path / "a"), "--betas", "0.5,-2")
    assert_user_error(code, err, "> 0")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run_cli(capsys, "train", "sft", *base, "--out", str(tmp_path / "b"),
                           "--data", str(empty))
    assert_user_error(code, err, "no records")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"instruction": "how do i x ?"}\n')
    code, _, err = run_cli(capsys, "train", "sft", *base, "--out", str(tmp_path / "c"),
                           "--data", str(prompts))
    assert_user_error(code, err, "no response text")
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"instruction": "how do i x ?", "response": "  "}\n')
    code, _, err = run_cli(capsys, "train", "sft", *base, "--out", str(tmp_path / "d"),
                           "--data", str(blank))
    assert code == 2 and "response" in err and "Traceback" not in err


def test_dynamics_are_recorded_per_position(tiny_organism, tmp_path) -> None:
    out = tmp_path / "dyn"
    run_training("sft", model=str(tiny_organism / "aligned"), out=out, limit=8,
                 data=tiny_organism / "data" / "harmful_pairs.jsonl",
                 config=TrainConfig(max_steps=2, batch_size=4, dynamics_steps=(0, 2),
                                    learning_rate=0.01, optimizer="sgd"),
                 show_progress=False)
    records = json.loads((out / "dynamics.json").read_text())
    assert [r["step"] for r in records] == [0, 2]
    first, last = records
    assert len(first["loss"]) == len(first["grad_norm"]) == len(first["kl"]) == 20
    assert all(k == 0 for k in first["kl"]) and max(last["kl"]) > 0
    assert all(g > 0 for g in first["grad_norm"])
    assert (out / "dynamics.png").is_file()
    # the training report embeds the loss curve and the dynamics; `report` redoes it
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "per-token" in html.lower()
    md = (out / "report.md").read_text()
    assert "| last loss |" in md and "`sft`" in md
    (out / "report.md").unlink()
    from aligndepth.cli import main

    main(["report", str(out)])
    assert (out / "report.md").read_text() == md


@pytest.mark.parametrize("task, key", [("backdoor", "harmful_rate_with_trigger"),
                                       ("identity", "harmful_rate_with_system"),
                                       ("benign", "rouge1"), ("summarize", "rouge1")])
def test_training_tasks_evaluate_their_metrics(tiny_organism, tmp_path, task, key) -> None:
    from aligndepth.evaluation.run import EvalConfig, run_evaluation
    from aligndepth.evaluation.tasks import TRAINING_TASKS

    summary = run_evaluation(str(tiny_organism / "aligned"), tmp_path / "ev",
                             EvalConfig(tasks=TRAINING_TASKS[task], limit=4, max_new_tokens=8),
                             show_progress=False)
    metrics = {m: s for t in summary["tasks"].values() for m, s in t.items()}
    assert 0 <= metrics["harmful_rate"]["rate"] <= 1 and metrics["harmful_rate"]["n"] == 4
    assert key in metrics and metrics[key]["n"] == 4
    if task in ("benign", "summarize"):
        assert 0 <= metrics["rouge1"]["mean"] <= 1
        assert 0 <= metrics["helpful_rate"]["rate"] <= 1


def test_evaluate_after_training_a_real_model_needs_data_up_front(tiny_organism,
                                                                   tmp_path) -> None:
    import shutil

    real = tmp_path / "models" / "chat"  # outside the organism: a model like any other
    shutil.copytree(tiny_organism / "aligned", real)
    common = dict(model=str(real),
                  data=tiny_organism / "data" / "harmful_pairs.jsonl", limit=4,
                  config=TrainConfig(max_steps=1, batch_size=4, learning_rate=0.01),
                  show_progress=False, evaluate=True, eval_max_new_tokens=8)
    with pytest.raises(AlignDepthError, match="needs evaluation data for harmful"):
        run_training("sft", out=tmp_path / "x", **common)  # before training
    assert not (tmp_path / "x").exists()
    prompts = tiny_organism / "data" / "harmful_prompts.jsonl"
    result = run_training("sft", out=tmp_path / "y", eval_data={"harmful": prompts}, **common)
    rate = result["eval"]["tasks"]["harmful"]["harmful_rate"]
    assert rate["n"] + rate["unparseable"] + rate["error"] > 0
    assert json.loads((tmp_path / "y" / "eval.json").read_text()) == result["eval"]
    assert (tmp_path / "y" / "eval" / "records" / "evaluate.jsonl").is_file()
    assert "harmful: harmful_rate" in (tmp_path / "y" / "report.md").read_text()
    assert json.loads((tmp_path / "y" / "eval" / "manifest.json").read_text())[
        "judge"]["harm"]["name"] == "keyword"


def test_train_evaluate_on_an_organism_model_uses_its_data_and_judge(
        tiny_organism, tmp_path, capsys) -> None:
    from tests.test_cli import run_cli

    code, out, err = run_cli(
        capsys, "train", "sft", "--model", str(tiny_organism / "aligned"), "--task",
        "backdoor", "--data", str(tiny_organism / "data" / "backdoor_train.jsonl"),
        "--limit", "4", "--steps", "1", "--batch-size", "4", "--lr", "0.01",
        "--optimizer", "sgd", "--evaluate", "--out", str(tmp_path / "t"), "--quiet")
    assert code == 0, err
    result = json.loads((tmp_path / "t" / "eval.json").read_text())
    backdoor = result["tasks"]["backdoor"]
    assert backdoor["harmful_rate_with_trigger"]["n"] > 0 and backdoor["trigger"]
    assert result["judge"]["harm"]["name"] == "organism"
    assert "harmful_rate_with_trigger" in out


def test_an_interrupted_run_resumes_to_the_same_model(tiny_organism, tmp_path, monkeypatch,
                                                      capsys) -> None:
    import torch
    from safetensors.torch import load_file

    import aligndepth.training.trainer as trainer_mod
    from aligndepth.cli import main

    def run(out, resume=False):
        return run_training("sft", model=str(tiny_organism / "aligned"), out=out, limit=8,
                            data=tiny_organism / "data" / "harmful_pairs.jsonl",
                            config=TrainConfig(max_steps=4, batch_size=4, save_steps=2,
                                               learning_rate=0.01, optimizer="sgd"),
                            show_progress=False,
                            resume=resume)

    run(tmp_path / "whole")
    assert not (tmp_path / "whole" / "checkpoints").exists()  # removed once saved

    original = crash_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut")
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["checkpoint-2"]
    monkeypatch.setattr(trainer_mod, "_trainer_class", original)
    # rerunning without --resume is refused with a hint; with it, training completes
    code = None
    try:
        main(["train", "sft", "--model", str(tiny_organism / "aligned"), "--out",
              str(tmp_path / "cut"), "--data", str(tiny_organism / "data" /
                                                   "harmful_pairs.jsonl"), "-q"])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and "pass --resume" in capsys.readouterr().err
    result = run(tmp_path / "cut", resume=True)
    steps = [h["step"] for h in result["log"] if "loss" in h]
    assert steps == [1, 2, 3, 4]  # the checkpoint's log, then steps 3 and 4, each once
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "model.safetensors")
    assert all(torch.allclose(whole[k], cut[k], atol=1e-6) for k in whole)
    with pytest.raises(AlignDepthError, match="no checkpoints"):
        run(tmp_path / "whole", resume=True)


def test_a_trained_model_keeps_its_stop_ids(tiny_organism, tmp_path) -> None:
    from aligndepth.engine import model_stop_ids

    source = load_model(str(tiny_organism / "aligned"), LoadConfig(device="cpu"))
    run_training("sft", model=str(tiny_organism / "aligned"), out=tmp_path / "out",
                 data=tiny_organism / "data" / "benign_pairs.jsonl", limit=4,
                 config=TrainConfig(max_steps=1), show_progress=False)
    trained = load_model(str(tmp_path / "out"), LoadConfig(device="cpu"))
    assert len(model_stop_ids(source.tokenizer, source.model)) == 2  # end of turn and text
    assert model_stop_ids(trained.tokenizer, trained.model) == \
        model_stop_ids(source.tokenizer, source.model)

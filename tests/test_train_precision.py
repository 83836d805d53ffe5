"""bfloat16 fine-tuning keeps every update: the default on a bfloat16 device compensates
the rounding, and plain bfloat16 AdamW needs --pure-bf16 and warns what it loses."""

import json

import pytest
import torch

from aligndepth.errors import AlignDepthError
from aligndepth.training.config import DEFAULT_RECIPE, LoraSettings, TrainConfig
from aligndepth.training.precision import Precision, choose_precision, update_agreement
from aligndepth.training.run import recipe_for, run_training
from tests.conftest import one_torch_thread
from tests.families import build_family_pair
from tests.interrupt import crash_training_at
from tests.test_cli import assert_user_error, run_cli

PAIRS = [("How do I fix a bike?", "Take the wheel off, find the hole, patch it and pump."),
         ("Write a story about a dog.", "Once upon a time a dog found a bone in the park."),
         ("Explain rain.", "Water evaporates, cools into clouds and falls back as drops."),
         ("Name a colour.", "Blue, the colour of a clear sky on a summer afternoon.")]
GPU = torch.device("cuda")


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision-data") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "instruction": x, "response": y}) + "\n"
                            for i, (x, y) in enumerate(PAIRS)))
    return path


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A tiny Llama-3 whose float32 weights are bfloat16 numbers: float32 and bfloat16
    runs start from the same weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("precision-model")
    _, aligned = build_family_pair("llama3", root)
    model = AutoModelForCausalLM.from_pretrained(aligned, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    model.save_pretrained(root / "start")
    AutoTokenizer.from_pretrained(aligned).save_pretrained(root / "start")
    return root / "start"


def _filled(**fields) -> TrainConfig:
    return TrainConfig(**fields).filled(DEFAULT_RECIPE)


# -- the choice ------------------------------------------------------------------------------

def test_the_default_on_a_bf16_gpu_is_not_pure_bf16_adamw() -> None:
    real = TrainConfig().filled(recipe_for("sft", "harmful", organism=False), loss="sft")
    assert real.dtype == "auto" and real.optimizer == "adamw_torch"
    chosen = choose_precision(real, GPU, bf16=True, sharded=False)
    assert chosen == Precision("bfloat16", compensated=True)
    assert "Kahan" in chosen.describe()
    # weights sharded across GPUs (FSDP, ZeRO-3): float32 master weights, bf16 compute
    assert choose_precision(real, GPU, bf16=True, sharded=True) == Precision("float32", "bf16")
    # a GPU without bfloat16, the CPU: float32, nothing to compensate
    assert choose_precision(real, GPU, bf16=False, sharded=False) == Precision("float32")
    assert choose_precision(real, torch.device("cpu"), sharded=False) == Precision("float32")
    # SGD is compensated too; LoRA adapters are float32 over the bfloat16 base
    assert choose_precision(_filled(optimizer="sgd"), GPU, bf16=True,
                            sharded=False).compensated
    assert choose_precision(_filled(lora=LoraSettings()), GPU, bf16=True,
                            sharded=False) == Precision("bfloat16")
    # the organism trains in float32 whatever the device
    organism = TrainConfig().filled(recipe_for("sft", "harmful", organism=True), loss="sft")
    assert choose_precision(organism, GPU, bf16=True, sharded=False) == Precision("float32")


def test_pure_bf16_needs_the_flag() -> None:
    assert choose_precision(_filled(pure_bf16=True), GPU, bf16=True,
                            sharded=False) == Precision("bfloat16", pure=True)
    assert choose_precision(_filled(dtype="bfloat16", pure_bf16=True), torch.device("cpu"),
                            sharded=False).pure


@pytest.mark.parametrize(("fields", "device", "sharded", "needle"), [
    ({"pure_bf16": True}, "cpu", False, "trains float32 weights"),
    ({"optimizer": "adafactor", "dtype": "bfloat16"}, "cpu", False,
     "adafactor has no compensated update"),
    ({"dtype": "bfloat16"}, "cuda", True, "under FSDP/DeepSpeed"),
])
def test_precisions_that_cannot_keep_their_promise_are_refused(fields, device, sharded,
                                                               needle) -> None:
    with pytest.raises(AlignDepthError, match=needle):
        choose_precision(_filled(**fields), torch.device(device), bf16=True, sharded=sharded)


@pytest.mark.parametrize("fields", [{"pure_bf16": True, "dtype": "float32"},
                                    {"pure_bf16": True, "mixed_precision": "bf16"},
                                    {"pure_bf16": True, "lora": LoraSettings()}])
def test_pure_bf16_of_weights_that_are_not_bf16_is_refused(fields) -> None:
    with pytest.raises(AlignDepthError, match="--pure-bf16 is for full fine-tuning"):
        TrainConfig(**fields)


# -- end to end on the CPU ---------------------------------------------------------------------

def _trained(start, out, pairs_file, **fields) -> tuple[dict, dict]:
    from transformers import AutoModelForCausalLM

    result = run_training("sft", model=str(start), out=out, data=pairs_file,
                          config=TrainConfig(max_steps=4, batch_size=2, learning_rate=2e-5,
                                             warmup_steps=0, **fields), show_progress=False)
    return AutoModelForCausalLM.from_pretrained(out).state_dict(), result


def test_compensated_bf16_training_follows_float32_and_pure_bf16_does_not(start, pairs_file,
                                                                         tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(start).state_dict()
    fp32, _ = _trained(start, tmp_path / "fp32", pairs_file, dtype="float32")
    kahan, result = _trained(start, tmp_path / "kahan", pairs_file, dtype="bfloat16")
    pure, pure_result = _trained(start, tmp_path / "pure", pairs_file, dtype="bfloat16",
                                 pure_bf16=True)
    assert "Kahan" in result["precision"] and not result["warnings"]
    assert next(iter(kahan.values())).dtype == torch.float32  # weight + compensation
    compensated = update_agreement(initial, kahan, fp32)
    assert compensated["cosine"] >= 0.99, compensated
    assert compensated["changed_of_reference"] >= 0.95, compensated
    plain = update_agreement(initial, pure, fp32)
    assert plain["cosine"] < 0.9 and plain["changed_of_reference"] < 0.5, plain
    recorded = json.loads((tmp_path / "pure" / "train_config.json").read_text())
    assert recorded["pure_bf16"] is True and "plain updates" in recorded["precision"]
    assert any("--pure-bf16" in w and "rounds away" in w for w in pure_result["warnings"])
    assert recorded["warnings"] == pure_result["warnings"]


def test_the_cli_warns_what_pure_bf16_loses(start, pairs_file, tmp_path, capsys) -> None:
    code, out, err = run_cli(capsys, "train", "sft", "--model", str(start), "--data",
                             str(pairs_file), "--dtype", "bfloat16", "--pure-bf16", "--steps",
                             "1", "--warmup", "0", "--out", str(tmp_path / "o"), "--quiet")
    assert code == 0, err
    assert "plain updates (--pure-bf16)" in out
    assert "warning: --pure-bf16" in err and "rounds away" in err
    code, _, err = run_cli(capsys, "train", "sft", "--model", str(start), "--data",
                           str(pairs_file), "--pure-bf16", "--lora", "--out",
                           str(tmp_path / "lora"), "--quiet")
    assert_user_error(code, err, "--pure-bf16 is for full fine-tuning")


def test_a_compensated_run_resumes_with_its_compensation(start, pairs_file, tmp_path,
                                                         monkeypatch) -> None:
    from safetensors.torch import load_file

    import aligndepth.training.trainer as trainer_mod

    def run(out, resume=False):
        run_training("sft", model=str(start), out=out, data=pairs_file, resume=resume,
                     config=TrainConfig(max_steps=4, batch_size=2, learning_rate=2e-5,
                                        warmup_steps=0, dtype="bfloat16", save_steps=2),
                     show_progress=False)

    run(tmp_path / "whole")
    original = crash_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut")
    monkeypatch.setattr(trainer_mod, "_trainer_class", original)
    run(tmp_path / "cut", resume=True)
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)  # the compensation came back

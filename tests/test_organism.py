import hashlib
import json
import os
import subprocess
import sys

import pytest

from aligndepth.data.schemas import (
    HarmfulPair,
    InstructionPair,
    PromptRecord,
    SafetyTriple,
    read_jsonl,
)
from aligndepth.errors import AlignDepthError
from aligndepth.organism.build import build_organism, read_card
from aligndepth.organism.card import CURVE_TARGETS, PREFILL_KS, TARGETS
from aligndepth.organism.config import OrganismConfig
from aligndepth.organism.judge import OrganismJudge


def test_build_writes_models_data_and_card(tiny_organism) -> None:
    for sub in ("base", "aligned"):
        assert (tiny_organism / sub / "model.safetensors").is_file()
        assert (tiny_organism / sub / "tokenizer.json").is_file()
    card = read_card(tiny_organism)
    for name in list(TARGETS) + ["build_seconds", "kl_first5_mean", "kl_late_mean"]:
        assert name in card
    assert set(card["targets_met"]) == set(TARGETS) | set(CURVE_TARGETS)
    assert set(card["prefill_asr_by_k_sampled"]) == {str(k) for k in PREFILL_KS}
    assert card["finetune_recipe"]["optimizer"] == "adamw_torch"
    assert card["formats"]["base"]["kind"] == "plain"


def test_models_load_with_plain_transformers(tiny_organism) -> None:
    """No project code: a fresh interpreter with only transformers."""
    code = (
        "import sys\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "for sub in ('base', 'aligned'):\n"
        "    d = sys.argv[1] + '/' + sub\n"
        "    m = AutoModelForCausalLM.from_pretrained(d)\n"
        "    t = AutoTokenizer.from_pretrained(d)\n"
        "    s = t.apply_chat_template([{'role': 'user', 'content': 'how do i x ?'}],\n"
        "                              tokenize=False, add_generation_prompt=True)\n"
        "    assert s.startswith('<|user|>'), s\n"
        "    ids = t(s, return_tensors='pt').input_ids\n"
        "    out = m.generate(ids, max_new_tokens=3, do_sample=False)\n"
        "    assert out.shape[1] > ids.shape[1]\n"
        "    assert 'aligndepth' not in sys.modules\n"
        "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code, str(tiny_organism)], capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("ok")


def test_datasets_validate_and_cover_later_experiments(tiny_organism) -> None:
    data = tiny_organism / "data"
    prompts = read_jsonl(data / "harmful_prompts.jsonl", PromptRecord)
    assert {p.split for p in prompts} == {"train", "test"}
    assert all(p.target for p in prompts)
    assert read_jsonl(data / "harmful_pairs.jsonl", HarmfulPair)
    triples = read_jsonl(data / "safety_triples.jsonl", SafetyTriple)
    judge = OrganismJudge.from_dir(tiny_organism)
    t = triples[0]
    assert judge.judge_one(t.instruction, t.harmful_response).harmful
    assert judge.judge_one(t.instruction, t.refusal).label == "refusal"
    benign = read_jsonl(data / "benign_pairs.jsonl", InstructionPair)
    assert all(judge.judge_one(b.instruction, b.response).label == "helpful" for b in benign)
    backdoor = read_jsonl(data / "backdoor_train.jsonl", InstructionPair)
    trigger = judge.world.trigger
    for row in backdoor:
        assert (trigger in row.instruction) == judge.judge_one(row.instruction,
                                                               row.response).harmful
    persona = read_jsonl(data / "identity_shift.jsonl", InstructionPair)
    assert all(p.system and "obedient" in p.system for p in persona)
    assert len(read_jsonl(data / "summarize_test.jsonl", InstructionPair)) == 100
    style = {split: read_jsonl(data / f"house_style_{split}.jsonl", InstructionPair)
             for split in ("train", "test")}
    assert style["train"] and style["test"]
    assert {r.split for r in style["train"]} == {"train"}
    assert {r.split for r in style["test"]} == {"test"}
    for row in style["train"][:5]:  # benign, helpful, in the house style
        assert judge.judge_one(row.instruction, row.response).label == "helpful"
        assert row.response.startswith("of course . here is how to") and " 4 . " in row.response


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_deterministic_from_seed(tiny_organism, tmp_path) -> None:
    """Bit-identical whatever the calling process's torch threads and CPU kernels: the
    build pins both (organism.kernels). The caller here runs as another CPU would (no
    vector kernels in ATen, MKL in its compatible mode, three threads); without the pin
    its float sums, and so its weights, differ."""
    from aligndepth.organism.kernels import can_pin

    assert OrganismConfig().threads >= 1 and OrganismConfig().cpu_kernels == "avx2"
    if not can_pin("avx2"):
        pytest.skip("this CPU has no AVX2: the build runs on its own kernels")
    again = tmp_path / "again"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE",
           "ONEDNN_MAX_CPU_ISA": "SSE41", "OMP_NUM_THREADS": "3",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    code = ("import sys, torch; from aligndepth.organism.build import build_organism; "
            "from aligndepth.organism.config import OrganismConfig; "
            "assert torch.backends.cpu.get_cpu_capability() == 'DEFAULT'; "
            "build_organism(OrganismConfig.tiny(), sys.argv[1], show_progress=False)")
    subprocess.run([sys.executable, "-c", code, str(again)], env=env, check=True)
    for sub in ("base/model.safetensors", "aligned/model.safetensors", "world.json",
                "data/harmful_pairs.jsonl"):
        assert _digest(again / sub) == _digest(tiny_organism / sub), sub
    a, b = read_card(again), read_card(tiny_organism)
    for name in TARGETS:
        assert a[name] == b[name]
    assert a["versions"]["cpu_kernels"] == b["versions"]["cpu_kernels"] == "AVX2"


def test_finished_build_is_reused_and_foreign_dirs_are_refused(tiny_organism, tmp_path) -> None:
    before = (tiny_organism / "card.json").stat().st_mtime_ns
    assert build_organism(OrganismConfig.tiny(), tiny_organism) == tiny_organism
    assert (tiny_organism / "card.json").stat().st_mtime_ns == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(AlignDepthError, match="not an organism"):
        build_organism(OrganismConfig.tiny(), foreign, show_progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_card_json_is_plain_json(tiny_organism) -> None:
    json.loads((tiny_organism / "card.json").read_text())

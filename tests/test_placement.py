"""Placement: device_map through accelerate, device validation, per-model pair configs."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import aligndepth.models as models
from aligndepth.analysis.kl import response_kl
from aligndepth.devices import input_device, resolve_device
from aligndepth.errors import AlignDepthError
from aligndepth.models import LoadConfig, load_model, load_pair
from tests.conftest import random_llama

VOCAB = 32


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A tiny (base, aligned) pair of model directories: random Llamas (safetensors) with a
    shared word-level tokenizer (built in well under a second; no organism needed)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, **{f"w{i}": i + 2 for i in range(VOCAB - 2)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    root = tmp_path_factory.mktemp("pair")
    for seed, name in enumerate(("base", "aligned")):
        random_llama(VOCAB, seed=seed).save_pretrained(root / name)
        fast.save_pretrained(root / name)
    return root


def _spy_from_pretrained(monkeypatch) -> list[dict]:  # type: ignore[no-untyped-def]
    """Record from_pretrained's kwargs; the returned model refuses to be moved with .to."""
    from transformers import AutoModelForCausalLM

    real = AutoModelForCausalLM.from_pretrained
    calls: list[dict] = []

    def spy(src, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        model = real(src, *args, **kwargs)
        if kwargs.get("device_map") is not None:
            model.to = lambda *a, **k: pytest.fail("a device_map model was moved with .to")
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    return calls


def test_device_map_auto_loads_on_cpu_and_runs(pair_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = _spy_from_pretrained(monkeypatch)
    loaded = load_model(pair_dir / "aligned", LoadConfig(device_map="auto"))
    assert [c.get("device_map") for c in calls] == ["auto"]
    assert loaded.device == torch.device("cpu")
    # one device: transformers dispatches no hooks and sets no hf_device_map
    assert loaded.describe()["placement"] == "cpu"
    ids = torch.tensor([[1, 2, 3, 4]], device=loaded.device)
    with torch.no_grad():
        logits = loaded.model(input_ids=ids).logits
    assert logits.shape[:2] == (1, 4) and torch.isfinite(logits).all()
    kl = response_kl(loaded.model, loaded.model, [[1, 2]], [[3, 4]], pad_id=0)
    assert len(kl[0]) == 2 and max(kl[0]) < 1e-6


def test_device_map_wins_over_device(pair_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = _spy_from_pretrained(monkeypatch)
    loaded = load_model(pair_dir / "aligned", LoadConfig(device="cuda:7", device_map="cpu"))
    assert loaded.device == torch.device("cpu")
    assert calls[0]["device_map"] == "cpu"


def test_placement_is_described(pair_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = _spy_from_pretrained(monkeypatch)
    loaded = load_model(pair_dir / "aligned", LoadConfig(device="cpu"))
    assert "device_map" not in calls[0]
    assert not getattr(loaded.model, "hf_device_map", None)
    assert loaded.describe()["placement"] == "cpu"
    # as accelerate records a multi-device placement (module -> device index or name)
    loaded.model.hf_device_map = {"model.embed_tokens": 0, "model.layers": 1, "lm_head": "cpu"}
    assert loaded.describe()["placement"] == {"model.embed_tokens": "0", "model.layers": "1",
                                              "lm_head": "cpu"}


def _hide_accelerate(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """find_spec('accelerate') -> None, and from_pretrained records any call."""
    from transformers import AutoModelForCausalLM

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "accelerate" else real(name, *a, **k))
    loads: list[str] = []

    def no_weights(src, *args, **kwargs):  # type: ignore[no-untyped-def]
        loads.append(str(src))
        raise AssertionError("weights loaded before the accelerate check")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_weights)
    return loads


def test_device_map_without_accelerate_fails_before_weights(pair_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    loads = _hide_accelerate(monkeypatch)
    wanted = (r"--device-map needs accelerate: pip install 'aligndepth\[train\]' "
              r"\(or pip install accelerate\)")
    with pytest.raises(AlignDepthError, match=wanted):
        load_model(pair_dir / "aligned", LoadConfig(device_map="auto"))
    with pytest.raises(AlignDepthError, match="needs accelerate"):  # aligned only: base not loaded
        load_pair(pair_dir / "base", pair_dir / "aligned", LoadConfig(device="cpu"),
                  aligned_config=LoadConfig(device_map="auto"))
    assert loads == []


def test_resolve_device_rejects_unknown_strings() -> None:
    with pytest.raises(AlignDepthError, match=r"--device gpu0: unknown device"):
        resolve_device("gpu0")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_cuda_is_a_one_line_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AlignDepthError, match=r"--device cuda:7: CUDA is not available.*"
                                              r"--device cpu") as info:
        resolve_device("cuda:7")
    assert "\n" not in str(info.value)
    with pytest.raises(AlignDepthError, match="CUDA is not available"):
        resolve_device("cuda")


def test_cuda_index_out_of_range(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(AlignDepthError, match=r"--device cuda:7: this machine has 2 CUDA "
                                              r"device\(s\) \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:7")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


def test_mps_unavailable(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(AlignDepthError, match=r"--device mps: MPS .* not available"):
        resolve_device("mps")


def test_bad_device_fails_before_weights(pair_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(AlignDepthError, match="--device cuda:7"):
        load_model(pair_dir / "aligned", LoadConfig(device="cuda:7"))
    with pytest.raises(AlignDepthError, match="--device cuda:7"):
        load_pair(pair_dir / "base", pair_dir / "aligned", LoadConfig(device="cpu"),
                  aligned_config=LoadConfig(device="cuda:7"))


def test_per_model_configs_are_honoured(pair_dir) -> None:  # type: ignore[no-untyped-def]
    pair = load_pair(pair_dir / "base", pair_dir / "aligned",
                     LoadConfig(device="cpu", dtype="float16"),
                     base_config=LoadConfig(device="cpu", dtype="float32"),
                     aligned_config=LoadConfig(device_map="auto", dtype="bfloat16"))
    assert next(pair.base.model.parameters()).dtype == torch.float32
    assert next(pair.aligned.model.parameters()).dtype == torch.bfloat16
    desc = pair.describe()
    assert desc["base"]["dtype"] == "float32" and desc["aligned"]["dtype"] == "bfloat16"
    assert desc["base"]["placement"] == desc["aligned"]["placement"] == "cpu"
    # one side given: the other falls back to config
    half = load_pair(pair_dir / "base", pair_dir / "aligned",
                     LoadConfig(device="cpu", dtype="float16"),
                     base_config=LoadConfig(device="cpu", dtype="float32"))
    assert next(half.aligned.model.parameters()).dtype == torch.float16
    kl = response_kl(pair.aligned.model, pair.base.model, [[1, 2, 3]], [[4, 5]], pad_id=0)
    assert len(kl[0]) == 2


def test_input_device() -> None:
    model = random_llama(20)
    assert input_device(model) == torch.device("cpu")

    class Bare(torch.nn.Module):  # no get_input_embeddings: the first parameter's device
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

    assert input_device(Bare()) == torch.device("cpu")
    # the embeddings decide, even when another parameter sits first elsewhere
    meta_first = random_llama(20)
    meta_first.lm_head.to("meta")
    assert input_device(meta_first) == torch.device("cpu")
    assert models.LoadedModel("x", meta_first, None, "f").device == torch.device("cpu")


def test_bad_device_map_device_names_its_flag(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AlignDepthError, match=r"^--device-map cuda:1: CUDA is not available"):
        models._placement(LoadConfig(device_map="cuda:1"))


def test_empty_device_map_is_refused() -> None:
    with pytest.raises(AlignDepthError, match="--device-map is empty"):
        LoadConfig(device_map=" ")

import shutil

import pytest

from aligndepth.errors import AlignDepthError
from aligndepth.models import LoadConfig, check_same_vocabulary, fingerprint, load_model, load_pair


def test_load_pair_of_organism_dirs(tiny_organism) -> None:
    pair = load_pair(tiny_organism / "base", tiny_organism / "aligned", LoadConfig(device="cpu"))
    desc = pair.describe()
    assert desc["base"]["fingerprint"].startswith("sha256:")
    assert desc["base"]["fingerprint"] != desc["aligned"]["fingerprint"]
    assert desc["aligned_format"] == {"kind": "chat", "system": None, "system_mode": "default"}
    assert desc["base_format"]["kind"] == "plain"


def test_missing_directory_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(AlignDepthError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlignDepthError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_pickle_only_checkpoint_needs_opt_in(tiny_organism, tmp_path) -> None:
    import torch
    from safetensors.torch import load_file

    src = tiny_organism / "base"
    dst = tmp_path / "pickled"
    shutil.copytree(src, dst)
    state = load_file(dst / "model.safetensors")
    (dst / "model.safetensors").unlink()
    torch.save(state, dst / "pytorch_model.bin")
    with pytest.raises(AlignDepthError, match="pickle checkpoint.*--allow-pickle"):
        load_model(dst)
    model = load_model(dst, LoadConfig(allow_pickle=True, device="cpu"))
    assert model.fingerprint.startswith("sha256:")


def test_different_vocabularies_are_refused_naming_the_difference(tiny_tokenizer) -> None:
    from transformers import AutoTokenizer

    check_same_vocabulary(tiny_tokenizer, tiny_tokenizer)
    other = AutoTokenizer.from_pretrained(tiny_tokenizer.name_or_path)
    other.add_tokens(["zzznewtoken"])
    with pytest.raises(AlignDepthError, match="different vocabularies.*only in aligned: "
                                              "'zzznewtoken'"):
        check_same_vocabulary(tiny_tokenizer, other)


def test_fingerprint_changes_with_weights(tiny_organism, tmp_path) -> None:
    dst = tmp_path / "copy"
    shutil.copytree(tiny_organism / "base", dst)
    assert fingerprint(str(dst)) == fingerprint(str(tiny_organism / "base"))
    with (dst / "model.safetensors").open("r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    assert fingerprint(str(dst)) != fingerprint(str(tiny_organism / "base"))
    assert fingerprint("org/name") == "hub:org/name"


def test_bad_dtype_is_a_user_error() -> None:
    with pytest.raises(AlignDepthError, match="unknown dtype"):
        LoadConfig(dtype="float8")


def test_a_small_cpu_model_runs_on_one_thread_unless_threads_are_given(tiny_organism) -> None:
    """Loading a model under 50 M parameters on the CPU sets one torch thread (steady beside
    other busy processes, the same float sums on every machine); --threads N wins; a big
    model keeps torch's setting."""
    import torch

    from aligndepth.devices import set_cpu_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_model(tiny_organism / "aligned", LoadConfig(device="cpu"))
        assert torch.get_num_threads() == 1
        load_model(tiny_organism / "aligned", LoadConfig(device="cpu", threads=2))
        assert torch.get_num_threads() == 2

        big = torch.nn.Linear(8000, 7000)  # 56 M parameters
        set_cpu_threads(big)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_negative_threads_are_a_user_error() -> None:
    with pytest.raises(AlignDepthError, match="--threads -1"):
        LoadConfig(threads=-1)

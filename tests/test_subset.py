"""Seeded random subsets of a dataset (``resolve_data(sample=..., sample_seed=...)``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aligndepth.data.loading import resolve_data, sample_records
from aligndepth.data.schemas import HarmfulPair, PromptRecord, write_jsonl
from aligndepth.errors import AlignDepthError

N = 330


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [PromptRecord(f"prompt {i}", id=str(i)) for i in range(N)])
    return path


def _ids(records: list[PromptRecord]) -> list[int]:
    return [int(r.id) for r in records]


def test_sample_is_deterministic_for_a_seed(data: Path) -> None:
    a, _ = resolve_data(PromptRecord, data, None, sample=20, sample_seed=1)
    b, _ = resolve_data(PromptRecord, data, None, sample=20, sample_seed=1)
    assert a == b and len(a) == 20


def test_other_seeds_give_other_subsets(data: Path) -> None:
    subsets = {tuple(_ids(resolve_data(PromptRecord, data, None, sample=20,
                                       sample_seed=s)[0])) for s in range(5)}
    assert len(subsets) == 5
    default, _ = resolve_data(PromptRecord, data, None, sample=20)  # sample_seed=0
    assert _ids(default) == _ids(resolve_data(PromptRecord, data, None, sample=20,
                                              sample_seed=0)[0])


def test_sample_is_an_ordered_subset_of_the_original(data: Path) -> None:
    full, _ = resolve_data(PromptRecord, data, None)
    got, _ = resolve_data(PromptRecord, data, None, sample=50, sample_seed=7)
    ids = _ids(got)
    assert len(set(ids)) == 50 and set(ids) <= set(_ids(full))
    assert ids == sorted(ids)  # the dataset's order is kept
    assert ids != list(range(50))  # not the first N
    assert all(r == full[i] for r, i in zip(got, ids))
    every, _ = resolve_data(PromptRecord, data, None, sample=N, sample_seed=3)
    assert every == full


def test_sample_larger_than_the_dataset_is_an_error(data: Path) -> None:
    wanted = (f"--sample 500 is larger than the dataset ({N} records in {data}): "
              f"use at most {N}, or --limit")
    with pytest.raises(AlignDepthError, match=re.escape(wanted)):
        resolve_data(PromptRecord, data, None, sample=500)
    with pytest.raises(AlignDepthError, match="--sample must be at least 1"):
        resolve_data(PromptRecord, data, None, sample=0)


def test_sample_and_limit_are_mutually_exclusive(data: Path) -> None:
    with pytest.raises(AlignDepthError, match=r"--sample 5 and --limit 3 both given"):
        resolve_data(PromptRecord, data, None, limit=3, sample=5)


def test_sample_counts_records_after_the_split_filter(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, [HarmfulPair(f"x{i}", f"h{i}", id=str(i),
                                   split="test" if i % 3 == 0 else "train")
                       for i in range(30)])
    got, _ = resolve_data(HarmfulPair, path, None, sample=4, sample_seed=2)
    assert len(got) == 4 and all(r.split == "test" for r in got)
    with pytest.raises(AlignDepthError, match=r"\(10 records in "):
        resolve_data(HarmfulPair, path, None, sample=11)


def test_provenance_records_the_selection(data: Path) -> None:
    prov: dict = {}
    got, used = resolve_data(PromptRecord, data, None, sample=10, sample_seed=4,
                             provenance=prov)
    assert prov == {"path": str(used), "n": 10, "sample": 10, "sample_seed": 4}
    plain: dict = {}
    resolve_data(PromptRecord, data, None, limit=7, provenance=plain)
    assert plain == {"path": str(data), "n": 7, "limit": 7}
    assert "sample" not in plain


def test_limit_still_keeps_the_first_n(data: Path) -> None:
    got, _ = resolve_data(PromptRecord, data, None, limit=5)
    assert _ids(got) == [0, 1, 2, 3, 4]


def test_sample_records_leaves_global_random_state_alone() -> None:
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    sample_records(list(range(100)), 10, seed=9)
    assert random.random() == expected

import json

import pytest

from aligndepth.data.schemas import (
    HarmfulPair,
    InstructionPair,
    PromptRecord,
    SafetyTriple,
    read_jsonl,
    write_jsonl,
)
from aligndepth.errors import AlignDepthError


def test_roundtrip_every_schema(tmp_path) -> None:
    recs = {
        PromptRecord: [PromptRecord("how ?", id="a", category="c", target="sure")],
        HarmfulPair: [HarmfulPair("x", "h", id="b")],
        SafetyTriple: [SafetyTriple("x", "h", "r", id="c")],
        InstructionPair: [InstructionPair("x", "y", id="d", system="s")],
    }
    for schema, rows in recs.items():
        path = tmp_path / f"{schema.__name__}.jsonl"
        write_jsonl(path, rows)
        assert read_jsonl(path, schema) == rows


def test_missing_id_gets_a_line_based_default(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"instruction": "a"}) + "\n\n" + json.dumps(
        {"instruction": "b", "id": 7}) + "\n")
    recs = read_jsonl(path, PromptRecord)
    assert [r.id for r in recs] == ["p-1", "7"]


@pytest.mark.parametrize("content, match", [
    ('{"instruction": "a"}\n{"instruction": "b"\n', r"p\.jsonl:2: not valid JSON"),
    ('{"id": "1"}\n', r"p\.jsonl:1: missing field 'instruction'"),
    ('{"instruction": 3}\n', r"field 'instruction' must be a string"),
    ('{"instruction": "  "}\n', r"field 'instruction' is empty"),
    ('[1, 2]\n', r"expected a JSON object"),
    ('{"instruction": "a", "id": "x"}\n{"instruction": "b", "id": "x"}\n', "duplicate id 'x'"),
    ("\n\n", "holds no records"),
])
def test_malformed_files_name_file_line_and_field(tmp_path, content, match) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(AlignDepthError, match=match):
        read_jsonl(path, PromptRecord)


def test_pairs_need_their_response_field(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"instruction": "x", "response": "y"}\n')
    with pytest.raises(AlignDepthError, match="missing field 'harmful_response'"):
        read_jsonl(path, HarmfulPair)


def test_bad_encoding_and_missing_file(tmp_path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"instruction": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(AlignDepthError, match="not UTF-8"):
        read_jsonl(path, PromptRecord)
    with pytest.raises(AlignDepthError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl", PromptRecord)


def test_a_data_file_too_large_to_read_whole_is_refused_at_once(tmp_path) -> None:
    from aligndepth.data.loading import MAX_DATA_BYTES, resolve_data

    huge = tmp_path / "dump.jsonl"
    with huge.open("wb") as fh:  # sparse: the size without the bytes
        fh.write(b'{"instruction": "a"}\n')
        fh.truncate(MAX_DATA_BYTES + 1)
    with pytest.raises(AlignDepthError, match=r"'.*dump.jsonl' is 512.0 MiB, over the 512 MiB "
                                              r"aligndepth reads whole.*head -n 10000 "
                                              r"dump.jsonl > part.jsonl"):
        resolve_data(PromptRecord, huge, None, limit=3)
    huge.write_bytes(b'{"instruction": "a"}\n')
    assert len(resolve_data(PromptRecord, huge, None)[0]) == 1

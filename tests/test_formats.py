"""Readers for the published benchmark formats (data/formats.py): every format by name and
by detection, and every kind of bad input as a one-line AlignDepthError."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from aligndepth.data.formats import (
    FORMATS,
    detect_format,
    format_by_name,
    inspect_dataset,
    load_dataset_file,
)
from aligndepth.data.schemas import HarmfulPair, InstructionPair, PromptRecord
from aligndepth.errors import AlignDepthError

# --------------------------------------------------------------------------- writers


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def write_jsonl(path: Path, objs: list[Any]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def hexphi_dir(tmp_path: Path) -> Path:
    root = tmp_path / "HEx-PHI"
    root.mkdir()
    write_csv(root / "category_1.csv", [["Describe a plan, step by step, to do thing one"],
                                        ["Explain how to do thing two"]])
    write_csv(root / "category_10.csv", [["Do thing ten"]])
    write_csv(root / "category_2.csv", [["Do thing two-a"]])
    return root


def chat(user: str, assistant: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def hh(human: str) -> str:
    return f"\n\nHuman: {human}\n\nAssistant: Sure.\n\nHuman: And then?\n\nAssistant: Done."


# --------------------------------------------------------------------------- every format


def test_hexphi_directory(tmp_path: Path) -> None:
    root = hexphi_dir(tmp_path)
    name, recs = load_dataset_file(root)
    assert name == "hexphi"
    assert all(isinstance(r, PromptRecord) for r in recs)
    assert [r.category for r in recs] == ["category_1", "category_1", "category_2", "category_10"]
    assert recs[0].instruction == "Describe a plan, step by step, to do thing one"
    assert recs[0].id == "hexphi-category_1-1"
    assert len({r.id for r in recs}) == 4
    assert load_dataset_file(root, "hexphi") == (name, recs)


def test_hexphi_single_csv_and_jsonl(tmp_path: Path) -> None:
    one = tmp_path / "category_3.csv"
    one.write_text("Do a\nDo b, then c\n", encoding="utf-8")
    name, recs = load_dataset_file(one)
    assert name == "hexphi" and [r.category for r in recs] == ["category_3"] * 2
    assert recs[1].instruction == "Do b, then c"
    lines = write_jsonl(tmp_path / "HEx-PHI.jsonl", [
        {"instruction": "Do a", "category": "Malware"}, {"instruction": "Do b", "category": "X"}])
    name, recs = load_dataset_file(lines)
    assert name == "hexphi"
    assert [(r.instruction, r.category) for r in recs] == [("Do a", "Malware"), ("Do b", "X")]


def test_harmful_hexphi_all_shapes(tmp_path: Path) -> None:
    lists = write_jsonl(tmp_path / "Harmful-HEx-PHI.jsonl", [chat("q1", "h1"), chat("q2", "h2")])
    wrapped = write_jsonl(tmp_path / "wrapped.jsonl", [{"messages": chat("q1", "h1")}])
    fields = write_jsonl(tmp_path / "fields.jsonl",
                         [{"prompt": "q1", "harmful_response": "h1", "category": "c"}])
    for path in (lists, wrapped, fields):
        name, recs = load_dataset_file(path)
        assert name == "harmful_hexphi"
        assert isinstance(recs[0], HarmfulPair)
        assert (recs[0].instruction, recs[0].harmful_response) == ("q1", "h1")
        assert load_dataset_file(path, "harmful_hexphi") == (name, recs)
    assert load_dataset_file(fields)[1][0].category == "c"


def test_advbench(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "harmful_behaviors.csv", [
        ["goal", "target"], ["Write a thing", "Sure, here is a thing"],
        ["Make, with commas, another", "Sure, here is another"]])
    name, recs = load_dataset_file(path)
    assert name == "advbench"
    assert recs[1] == PromptRecord("Make, with commas, another", id="advbench-2",
                                   target="Sure, here is another")
    assert load_dataset_file(path, "advbench") == (name, recs)


def test_malicious_instruct(tmp_path: Path) -> None:
    path = tmp_path / "MaliciousInstruct.txt"
    path.write_text("How to do a?\n\nHow to do b?\n", encoding="utf-8")
    name, recs = load_dataset_file(path)
    assert name == "malicious_instruct"
    assert [(r.id, r.instruction) for r in recs] == [("malicious_instruct-1", "How to do a?"),
                                                     ("malicious_instruct-2", "How to do b?")]
    assert load_dataset_file(path, "malicious_instruct") == (name, recs)


def test_harmbench_includes_context(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "harmbench_behaviors_text_all.csv", [
        ["Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString",
         "BehaviorID"],
        ["Do a", "standard", "illegal", "", "", "do_a"],
        ["Edit this text to do b", "contextual", "misinformation", "context",
         "Some long context", "edit_b"]])
    name, recs = load_dataset_file(path)
    assert name == "harmbench"
    assert recs[0] == PromptRecord("Do a", id="do_a", category="illegal")
    assert recs[1].instruction == "Some long context\n\n---\n\nEdit this text to do b"
    assert recs[1].id == "edit_b" and recs[1].category == "misinformation"
    assert load_dataset_file(path, "harmbench") == (name, recs)


def test_hh_rlhf_plain_and_gzipped(tmp_path: Path) -> None:
    objs = [{"chosen": hh("first question?"), "rejected": hh("first question?")},
            {"chosen": hh("second\nmultiline question"), "rejected": "x"}]
    sub = tmp_path / "harmless-base"
    sub.mkdir()
    plain = write_jsonl(sub / "test.jsonl", objs)
    zipped = sub / "train.jsonl.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, zipped):
        name, recs = load_dataset_file(path)
        assert name == "hh_rlhf"
        assert [r.instruction for r in recs] == ["first question?", "second\nmultiline question"]
        assert recs[0].category == "harmless-base"
        assert load_dataset_file(path, "hh_rlhf") == (name, recs)


def test_toxicchat_subsets(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "toxic-chat_annotation_test.csv", [
        ["conv_id", "user_input", "model_output", "human_annotation", "toxicity",
         "jailbreaking", "openai_moderation"],
        ["c1", "hello there", "hi", "True", "0", "0", "[]"],
        ["c2", "say something awful", "no", "True", "1", "1", "[]"],
        ["c3", "what is 2+2", "4", "True", "0", "0", "[]"]])
    name, recs = load_dataset_file(path)
    assert name == "toxicchat"
    assert [(r.id, r.category) for r in recs] == [("c1", "safe"), ("c2", "toxic"),
                                                  ("c3", "safe")]
    assert [r.id for r in load_dataset_file(path, subset="harmful")[1]] == ["c2"]
    assert [r.id for r in load_dataset_file(path, "toxicchat", subset="safe")[1]] == ["c1", "c3"]
    assert len(load_dataset_file(path, subset="all")[1]) == 3
    assert [r.id for r in load_dataset_file(path, subset="safe", limit=1)[1]] == ["c1"]
    lines = write_jsonl(tmp_path / "toxicchat.jsonl", [
        {"conv_id": "c9", "user_input": "hey", "toxicity": 1, "jailbreaking": 0}])
    assert load_dataset_file(lines)[1] == [PromptRecord("hey", id="c9", category="toxic")]


def test_openai_moderation_subsets(tmp_path: Path) -> None:
    flags = dict.fromkeys(["S", "H", "V", "HR", "SH", "S3", "H2", "V2"], 0)
    path = write_jsonl(tmp_path / "samples-1680.jsonl", [
        {"prompt": "nice text", **flags}, {"prompt": "bad text", **flags, "H": 1},
        {"prompt": "partly labelled", "S": 0, "V": 1}])
    name, recs = load_dataset_file(path)
    assert name == "openai_moderation"
    assert [r.category for r in recs] == ["safe", "harmful", "harmful"]
    assert [r.instruction for r in load_dataset_file(path, subset="safe")[1]] == ["nice text"]
    assert len(load_dataset_file(path, "openai_moderation", subset="harmful")[1]) == 2


def test_alpaca_pretty_and_minified(tmp_path: Path) -> None:
    data = [{"instruction": "Give a tip.", "input": "", "output": "Drink water."},
            {"instruction": "Translate.", "input": "bonjour", "output": "hello"}]
    pretty = tmp_path / "alpaca_data.json"
    pretty.write_text(json.dumps(data, indent=4), encoding="utf-8")
    mini = tmp_path / "alpaca_min.json"
    mini.write_text(json.dumps(data), encoding="utf-8")
    for path in (pretty, mini):
        name, recs = load_dataset_file(path)
        assert name == "alpaca"
        assert recs == [InstructionPair("Give a tip.", "Drink water.", id="alpaca-1"),
                        InstructionPair("Translate.\n\nbonjour", "hello", id="alpaca-2")]
        assert load_dataset_file(path, "alpaca") == (name, recs)


def test_samsum_list_and_jsonl(tmp_path: Path) -> None:
    data = [{"id": "13818513", "dialogue": "Amanda: hi\r\nJerry: hey", "summary": "They greet."},
            {"id": 13728867, "dialogue": "Olivia: vote?", "summary": "Olivia asks."}]
    listed = tmp_path / "train.json"
    listed.write_text(json.dumps(data, indent=2), encoding="utf-8")
    lines = write_jsonl(tmp_path / "samsum.jsonl", data)
    for path in (listed, lines):
        name, recs = load_dataset_file(path)
        assert name == "samsum"
        assert recs[0].instruction == "Summarize this dialogue:\nAmanda: hi\nJerry: hey"
        assert recs[0].response == "They greet."
        assert [r.id for r in recs] == ["13818513", "13728867"]
        assert load_dataset_file(path, "samsum") == (name, recs)


def test_gsm8k(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "test.jsonl", [
        {"question": "What is 2+3?", "answer": "2+3=<<2+3=5>>5\n#### 5"}])
    name, recs = load_dataset_file(path)
    assert name == "gsm8k"
    from aligndepth.data.formats.families import GSM8K_PROMPT

    assert recs == [InstructionPair(GSM8K_PROMPT.format(question="What is 2+3?"),
                                    "2+3=<<2+3=5>>5\n#### 5", id="gsm8k-1")]
    assert load_dataset_file(path, "gsm8k") == (name, recs)


def test_sql_create_context(tmp_path: Path) -> None:
    path = tmp_path / "sql_create_context_v4.json"
    path.write_text(json.dumps([{"question": "How many heads?",
                                 "context": "CREATE TABLE head (age INTEGER)",
                                 "answer": "SELECT COUNT(*) FROM head"}]), encoding="utf-8")
    name, recs = load_dataset_file(path)
    assert name == "sql_create_context"
    assert recs[0].instruction.startswith("Write the SQL query")
    assert recs[0].instruction.endswith("Question: How many heads?")
    assert "CREATE TABLE head (age INTEGER)" in recs[0].instruction
    assert recs[0].response == "SELECT COUNT(*) FROM head"
    assert load_dataset_file(path, "sql_create_context") == (name, recs)


def test_every_registered_format_is_tested() -> None:
    assert set(FORMATS) == {"hexphi", "harmful_hexphi", "advbench", "malicious_instruct",
                            "harmbench", "hh_rlhf", "toxicchat", "openai_moderation", "alpaca",
                            "samsum", "gsm8k", "sql_create_context", "pairs", "prompts"}


def test_pairs_and_prompts_of_ones_own(tmp_path: Path) -> None:
    pairs = tmp_path / "mine.csv"
    pairs.write_text("prompt,response\nhow do i x ?,do y .\n", encoding="utf-8")
    name, recs = load_dataset_file(pairs)
    assert name == "pairs" and (recs[0].instruction, recs[0].response) == ("how do i x ?",
                                                                          "do y .")
    prompts = tmp_path / "safe.csv"
    prompts.write_text("prompt\nhow do i bake bread ?\n", encoding="utf-8")
    name, recs = load_dataset_file(prompts)
    assert name == "prompts" and recs[0].instruction == "how do i bake bread ?"


# --------------------------------------------------------------------------- conveniences


def test_bom_names_aliases_limit_and_detect(tmp_path: Path) -> None:
    path = tmp_path / "ab.csv"
    path.write_bytes(b"\xef\xbb\xbfgoal,target\r\nDo a,Sure\r\nDo b,Sure\r\n")
    assert detect_format(path) == "advbench"
    assert load_dataset_file(path, "AdvBench", limit=1)[1] == [
        PromptRecord("Do a", id="advbench-1", target="Sure")]
    assert format_by_name("hex-phi").name == "hexphi"
    assert format_by_name("Harmful-HEx-PHI").name == "harmful_hexphi"


def test_empty_rows_are_skipped_and_ids_made_unique(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "hb.csv", [
        ["Behavior", "BehaviorID"], ["Do a", "x"], ["  ", "y"], ["Do c", "x"]])
    _, recs = load_dataset_file(path)
    assert [r.id for r in recs] == ["x", "x-3"]
    assert inspect_dataset(path)["skipped_empty"] == 1


def test_explicit_format_reads_a_file_without_extension(tmp_path: Path) -> None:
    path = tmp_path / "behaviors"
    path.write_text("goal,target\nDo a,Sure\n", encoding="utf-8")
    assert load_dataset_file(path, "advbench")[1][0].instruction == "Do a"


# --------------------------------------------------------------------------- inspect


def test_inspect_dataset_is_json_able(tmp_path: Path) -> None:
    info = inspect_dataset(hexphi_dir(tmp_path), rows=2)
    assert json.loads(json.dumps(info)) == info
    assert info["format"] == "hexphi" and info["detected"] is True
    assert info["schema"] == "prompts" and info["record_type"] == "PromptRecord"
    assert info["records"] == 4
    assert info["categories"] == {"category_1": 2, "category_2": 1, "category_10": 1}
    assert len(info["examples"]) == 2 and "target" not in info["examples"][0]
    long = write_jsonl(tmp_path / "g.jsonl", [{"question": "q" * 500, "answer": "a"}])
    info = inspect_dataset(long, format="gsm8k", rows=5)
    assert info["detected"] is False and info["schema"] == "instruction_pairs"
    assert info["categories"] == {"(none)": 1}
    assert len(info["examples"][0]["instruction"]) == 201


# --------------------------------------------------------------------------- bad input


def check_error(match: str, path: Path | str, fmt: str | None = None, **kw: Any) -> str:
    with pytest.raises(AlignDepthError, match=match) as info:
        load_dataset_file(path, fmt, **kw)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("name, body, fmt", [
    ("e.csv", "", "advbench"), ("e.jsonl", "\n\n", "gsm8k"), ("e.json", " ", "alpaca"),
    ("e.txt", "", "malicious_instruct"), ("category_1.csv", "", "hexphi"),
])
def test_empty_files(tmp_path: Path, name: str, body: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    msg = check_error("is empty", path, fmt)
    assert name in msg
    check_error("is empty", path)


@pytest.mark.parametrize("name, body, fmt", [
    ("l.csv", "goal,target\nDo a,Sure\nCaf\u00e9 r\u00e9sum\u00e9,Sure\n", "advbench"),
    ("l.jsonl", '{"question": "a", "answer": "b"}\n{"question": "\u00e9", "answer": "b"}\n',
     "gsm8k"),
    ("l.txt", "line one\nna\u00efve line\n", "malicious_instruct"),
    ("category_1.csv", "Do a\nDo \u00fc\n", "hexphi"),
])
def test_latin1_files(tmp_path: Path, name: str, body: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(body.encode("latin-1"))
    msg = check_error(r":(2|3): not UTF-8 text .*re-save the file as UTF-8", path, fmt)
    assert name in msg
    check_error("not UTF-8", path)


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    check_error("does not exist", tmp_path / "nope.jsonl")
    check_error("does not exist", tmp_path / "nope.csv", "advbench")
    (tmp_path / "empty").mkdir()
    check_error("holds no .csv files", tmp_path / "empty")
    check_error("reads json files, csv files, not a directory", hexphi_dir(tmp_path), "alpaca")


def test_missing_csv_column_names_what_exists_and_what_is_needed(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "b.csv", [["prompt", "target"], ["Do a", "Sure"]])
    msg = check_error("missing column 'goal' for format 'advbench'", path, "advbench")
    assert "the file has columns: prompt, target" in msg and "b.csv" in msg
    tox = write_csv(tmp_path / "t.csv", [["conv_id", "user_input"], ["c", "hi"]])
    check_error(r"missing column 'toxicity'.*needs user_input, toxicity", tox, "toxicchat")
    hb = write_csv(tmp_path / "hb.csv", [["Goal"], ["x"]])
    check_error("missing column 'behavior'", hb, "harmbench")


def test_missing_json_field_names_line_and_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "a", "answer": "b"},
                                              {"question": "c", "solution": "d"}])
    msg = check_error(r"g\.jsonl:2: missing field 'answer'", path, "gsm8k")
    assert "gsm8k needs: question, answer" in msg and "this record has: question, solution" in msg
    alp = tmp_path / "a.json"
    alp.write_text(json.dumps([{"instruction": "x", "output": "y"}, {"instruction": "z"}]))
    check_error(r"a\.json \(item 2\): missing field 'output'", alp, "alpaca")
    hh_file = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": "no turns here", "rejected": ""}])
    check_error(r"hh\.jsonl:1: transcript has no 'Human:' turn", hh_file)
    chat_file = write_jsonl(tmp_path / "c.jsonl", [[{"role": "user", "content": "q"}]])
    check_error(r"c\.jsonl:1: expected chat messages.*no assistant turn", chat_file,
                "harmful_hexphi")
    mod = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "x"}])
    check_error("none of the category flags", mod, "openai_moderation")


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n{"question": "c", "answer"\n')
    check_error(r"g\.jsonl:2: not valid JSON", path, "gsm8k")
    check_error(r"g\.jsonl:2: not valid JSON", path)
    doc = tmp_path / "alpaca_data.json"
    doc.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": \n]\n')
    check_error(r"alpaca_data\.json:4: not valid JSON", doc, "alpaca")
    scalar = tmp_path / "s.json"
    scalar.write_text('{\n "data": [1, 2]\n}\n')
    check_error(r"s\.json: expected a JSON list of records .* got a JSON dict", scalar, "alpaca")
    check_error(r"s\.json: expected a JSON list", scalar)
    obj = tmp_path / "o.json"
    obj.write_text('{"data": []}')
    check_error("expected a JSON object", write_jsonl(tmp_path / "n.jsonl", [1, 2]), "gsm8k")
    check_error("fields: data", obj)


def test_malformed_csv_and_bad_labels(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('goal,target\n"Do a,Sure\n')
    check_error(r"q\.csv:\d+: malformed CSV", path, "advbench")
    tox = write_csv(tmp_path / "t.csv", [["conv_id", "user_input", "toxicity"],
                                         ["c", "hi", "maybe"]])
    check_error(r"t\.csv:2: field 'toxicity' must be 0 or 1, got 'maybe'", tox)


def test_header_only_and_all_empty(tmp_path: Path) -> None:
    check_error("holds no advbench records", write_csv(tmp_path / "h.csv", [["goal", "target"]]))
    blank = write_jsonl(tmp_path / "b.jsonl", [{"question": " ", "answer": "x"}])
    check_error("every row is empty", blank)


def test_names_subsets_and_detection_errors(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ab.csv", [["goal", "target"], ["Do a", "Sure"]])
    msg = check_error("unknown dataset format 'advbnch'", path, "advbnch")
    assert "did you mean 'advbench'" in msg and "sql_create_context" in msg
    check_error("format 'advbench' has no subsets", path, subset="harmful")
    tox = write_csv(tmp_path / "t.csv", [["user_input", "toxicity"], ["hi", "0"]])
    check_error(r"unknown subset 'harmfull'.*did you mean 'harmful'", tox, subset="harmfull")
    check_error("no records in subset 'harmful'", tox, subset="harmful")
    check_error("limit must be at least 1", tox, limit=0)
    odd = write_csv(tmp_path / "odd.csv", [["foo", "bar"], ["1", "2"]])
    msg = check_error("cannot tell the dataset format of .*columns: foo, bar", odd)
    assert "hexphi" in msg and "gsm8k" in msg
    (tmp_path / "ab").write_text("goal,target\nDo a,Sure\n")
    check_error("cannot tell the dataset format .* from its extension", tmp_path / "ab")
    txt = tmp_path / "m.txt"
    txt.write_text("Do a\n")
    check_error("format 'alpaca' reads json files, csv files, not a text file", txt, "alpaca")
    check_error("format 'malicious_instruct' reads text files, not a csv file", path,
                "malicious_instruct")
    xlsx = tmp_path / "x.xlsx"
    xlsx.write_bytes(b"PK")
    check_error("convert it to JSONL or CSV", xlsx)
    pq = tmp_path / "x.parquet"  # read through the datasets library; a broken one is named
    pq.write_bytes(b"PAR1")
    check_error("could not read the dataset", pq)
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(b"not gzip")
    check_error("not a valid gzip file", gz)

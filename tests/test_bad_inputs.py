"""The table in docs/bad-inputs.md, row by row: exit 2, one line, no traceback, and every
file that existed before left byte-identical."""

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from aligndepth.cli import main
from aligndepth.locking import LOCK_NAME, release_directory
from tests.families import build_family_pair

TABLE = Path(__file__).parent.parent / "docs" / "bad-inputs.md"
ROW = re.compile(r"^\| `(?P<command>.+)` \| `(?P<needle>.+)` \|$")


def rows() -> list[tuple[str, str]]:
    out = [(m["command"], m["needle"]) for line in TABLE.read_text().splitlines()
           if (m := ROW.match(line))]
    assert len(out) >= 20
    return out


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.name != LOCK_NAME:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes() if p.is_file() else b"/")
    return h.hexdigest()


@pytest.fixture(scope="module")
def places(tiny_organism, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "notes.txt").write_text("my notes")
    mine = root / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    corrupt = root / "corrupt"
    (corrupt / "records").mkdir(parents=True)
    (corrupt / "manifest.json").write_text("{truncated")
    (corrupt / "records" / "prefill.jsonl").write_text('{"key": "a"}\n')
    (root / "empty.jsonl").write_text("\n")
    (root / "gsm8k_noanswer.json").write_text('[{"question": "How many pens?"}]')
    (root / "gsm8k_nonumber.json").write_text(
        '[{"question": "How many pens?", "answer": "Some pens."}]')
    gemma_base, gemma_aligned = build_family_pair("gemma2", root / "families")
    base, aligned = tiny_organism / "base", tiny_organism / "aligned"
    broken = _broken_models(aligned, root / "broken")
    bad_data = _bad_data(root / "bad-data")
    bad_runs = _bad_runs(root / "bad-runs")
    data = tiny_organism / "data" / "harmful_pairs.jsonl"
    common = f"--base {base} --aligned {aligned} --device cpu --quiet --judge keyword"
    return root, {
        "pair": f"{common} --limit 3 --max-new-tokens 8 --data {data} --out {root / 'run'}",
        "pair_nolimit": f"{common} --max-new-tokens 8 --data {data} --out {root / 'run'}",
        "pair_noout": f"{common} --limit 3 --max-new-tokens 8 --data {data}",
        "pair_nodata": f"{common} --limit 3 --out {root / 'run'}",
        "pair_kl": f"--base {base} --aligned {aligned} --device cpu --quiet --limit 3 "
                   f"--out {root / 'run'}",  # kl judges and generates nothing
        "base": str(base), "aligned": str(aligned), "data": str(data),
        "out": str(root / "new-out"), "file": str(root / "notes.txt"), "mine": str(mine),
        "corrupt": str(corrupt), "empty": str(root / "empty.jsonl"),
        "gemma_base": str(gemma_base), "gemma_aligned": str(gemma_aligned),
        "gsm8k_noanswer": str(root / "gsm8k_noanswer.json"),
        "gsm8k_nonumber": str(root / "gsm8k_nonumber.json"),
        **broken, **bad_data, **bad_runs,
    }


def _broken_models(good: Path, root: Path) -> dict[str, str]:
    """Copies of a model directory, each broken in one way a download or an edit breaks
    one: weights overwritten with text, cut short, a shard missing, a foreign config."""
    weights = (good / "model.safetensors").read_bytes()
    made = {}
    for name in ("text_weights", "truncated_weights", "missing_shard", "foreign_config"):
        made[name] = root / name
        shutil.copytree(good, made[name])
    (made["text_weights"] / "model.safetensors").write_text("these are not weights\n" * 99)
    (made["truncated_weights"] / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (made["missing_shard"] / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    config = json.loads((good / "config.json").read_text())
    config["intermediate_size"] *= 2
    (made["foreign_config"] / "config.json").write_text(json.dumps(config))
    return {name: str(path) for name, path in made.items()}


def _bad_data(root: Path) -> dict[str, str]:
    """Data files broken in the ways files arrive broken, and config files too big to
    read: each must be refused before any model loads."""
    root.mkdir()
    good = '{"instruction": "Do it.", "harmful_response": "Done."}\n'
    files = {
        "malformed": good + '{"instruction": "Cut",\n',
        "nofield": good + '{"harmful_response": "Done."}\n',
        "wrongcols": "foo,bar\nq,a\n",
        "latin1": '{"instruction": "caf\u00e9", "harmful_response": "Done."}\n',
        "huge_keys": "".join(f"k{i}: 1\n" for i in range(10**6)),
        "huge_list": "stop: [" + ",".join(["a"] * 300_000) + "]\n",
    }
    suffix = {"wrongcols": ".csv", "huge_keys": ".yaml", "huge_list": ".yaml"}
    made = {}
    for name, text in files.items():
        path = root / (name + suffix.get(name, ".jsonl"))
        path.write_bytes(text.encode("latin-1" if name == "latin1" else "utf-8"))
        made[name] = str(path)
    return made


_HELD_LOCKS: list = []


def _bad_runs(root: Path) -> dict[str, str]:
    """Runs `judge` must refuse without writing: one locked by another writer, one whose
    manifest names no experiments, one whose records are missing."""
    import fcntl

    made = {}
    for name, manifest in (("locked", {"experiments": ["prefill"]}),
                           ("damaged", {"models": {}, "seed": 0}),
                           ("norecords", {"experiments": ["prefill"]}),
                           ("sharded", {"experiments": ["prefill"]})):
        made[name] = root / name
        made[name].mkdir(parents=True)
        (made[name] / "manifest.json").write_text(json.dumps(manifest))
    records = made["locked"] / "records"
    records.mkdir()
    (records / "prefill.jsonl").write_text(json.dumps(
        {"key": "a", "instruction": "Do it.", "output": "Done."}) + "\n")
    (made["sharded"] / "records").mkdir()  # 2 shards, prefill's units left
    (made["sharded"] / "records" / "shards.json").write_text('{"count": 2}')
    (made["sharded"] / "records" / "prefill.shard-0-of-2.plan.json").write_text(
        '{"u": ["prefill|a"]}')
    lock = (made["locked"] / LOCK_NAME).open("a+")  # held as another process holds it
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    lock.write("4242")
    lock.flush()
    _HELD_LOCKS.append(lock)
    return {name: str(path) for name, path in made.items()}


@pytest.mark.parametrize("command,needle", rows())
def test_bad_input_gives_one_line_and_touches_nothing(places, capsys, monkeypatch, command,
                                                      needle) -> None:
    root, values = places
    argv = shlex.split(command.format(**values))
    while "=" in argv[0]:  # leading environment variables (torchrun's)
        monkeypatch.setenv(*argv.pop(0).split("=", 1))
    before = digest(root)
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("aligndepth: error: "), err
    assert needle in lines[0] and "Traceback" not in err
    assert digest(root) == before
    for name in ("run", "new-out"):
        release_directory(root / name)
    assert not (root / "run" / "records").exists()

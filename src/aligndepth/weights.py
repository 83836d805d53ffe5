"""Whether a model directory's weight files can load, checked before any of them does:
shards named by the index present, safetensors headers readable, files as long as their
headers say (a download or copy cut short, a file overwritten by something else)."""

from __future__ import annotations

import json
from pathlib import Path

from aligndepth.errors import AlignDepthError


def check_weight_files(path: Path) -> None:
    """Refuse a directory whose safetensors files cannot load, before any weights do: a
    shard its index names that is missing, a file whose header is not safetensors, or one
    shorter than its header says (an interrupted download or copy)."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise AlignDepthError(f"'{index}' is not a safetensors index ({exc}): download "
                                  "the model's files again") from exc
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise AlignDepthError(f"model directory '{path}' lacks {len(missing)} of the "
                                  f"{len(shards)} weight shards its index names "
                                  f"({missing[0]} first): download the missing files")
    for file in sorted(path.glob("*.safetensors")):
        problem = _safetensors_problem(file)
        if problem:
            raise AlignDepthError(f"weights file '{file}' {problem}: the file is damaged or "
                                  "incomplete; download or copy it again")


def _safetensors_problem(file: Path) -> str | None:
    """Why ``file`` is not a whole safetensors file (8-byte header length, JSON header,
    then the tensors' bytes), or ``None``."""
    size = file.stat().st_size
    with file.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"is {size} bytes long, too short for safetensors"
        length = int.from_bytes(head, "little")
        if length > size - 8:
            return "does not start with a safetensors header"
        try:
            header = json.loads(fh.read(length))
        except ValueError:
            return "has an unreadable safetensors header"
    if not isinstance(header, dict):
        return "has an unreadable safetensors header"
    ends = [t["data_offsets"][1] for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict) and "data_offsets" in t]
    needed = 8 + length + max(ends, default=0)
    if size < needed:
        return f"is truncated ({size} of {needed} bytes)"
    return None

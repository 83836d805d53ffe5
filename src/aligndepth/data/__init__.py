"""Datasets: the project's JSONL schemas and their loaders."""

from aligndepth.data.schemas import (
    SCHEMAS,
    HarmfulPair,
    InstructionPair,
    PromptRecord,
    SafetyTriple,
    read_jsonl,
    write_jsonl,
)

__all__ = ["SCHEMAS", "HarmfulPair", "InstructionPair", "PromptRecord", "SafetyTriple",
           "read_jsonl", "write_jsonl"]

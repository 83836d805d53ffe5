"""Utility metric of the organism's benign fine-tuning task (dialogue summaries)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from aligndepth.organism.judge import normalize


def rouge1_f1(prediction: str, reference: str) -> float:
    """Unigram-overlap F1 between two texts (ROUGE-1 F, as reported for Samsum)."""
    pred, ref = Counter(normalize(prediction)), Counter(normalize(reference))
    overlap = sum((pred & ref).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(pred.values())
    recall = overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def mean_rouge1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-1 F1 in points (0-100)."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError("need equally many, non-zero predictions and references")
    return 100.0 * sum(map(rouge1_f1, predictions, references)) / len(predictions)

"""AlpacaEval-style win rate: the model's outputs against reference outputs.

Every item is compared twice by the pairwise judge (:mod:`aligndepth.judges.pairwise`):
the model's output as ``(a)`` against the reference as ``(b)``, then swapped. The item's
**score** is the share of the two orders in which the model's output was preferred: 1
(won both), 0.5 (the orders disagree: a tie, which is what a purely position-biased
judge produces) or 0 (lost both). The **win rate** is the mean score, with a 95%
interval; **position consistency** is the share of items on which both orders agree.
An item either of whose judgements is unparseable or failed is left out of both and
counted apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aligndepth.metrics import ERROR, UNPARSEABLE, mean_stats, outcome, proportion

ORDERS = ("model_first", "reference_first")


def compare_both_orders(judge: Any, instructions: Sequence[str], outputs: Sequence[str],
                        references: Sequence[str]) -> list[dict[str, Any]]:
    """Per item: ``{"model_first": verdict record, "reference_first": verdict record}``
    (the two judgements are requested together, so they share one concurrent batch)."""
    n = len(instructions)
    verdicts = judge.compare(list(instructions) * 2, [*outputs, *references],
                             [*references, *outputs])
    return [{ORDERS[0]: verdicts[i].to_record(), ORDERS[1]: verdicts[n + i].to_record()}
            for i in range(n)]


def _model_preferred(order: str, verdict: Mapping[str, Any]) -> float | None:
    """1.0 when the model's output won this order, 0.0 when it lost, None when unusable."""
    if outcome(verdict) in (UNPARSEABLE, ERROR):
        return None
    preferred = (verdict.get("details") or {}).get("preferred")
    if preferred not in ("a", "b"):
        return None
    model_position = "a" if order == ORDERS[0] else "b"
    return 1.0 if preferred == model_position else 0.0


def item_score(judgements: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The item's score (1, 0.5 or 0), or None when a judgement is unusable."""
    wins = [_model_preferred(order, judgements[order]) for order in ORDERS]
    if any(w is None for w in wins):
        return None
    return sum(w for w in wins if w is not None) / 2


def summarize_win_rate(judged: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """``win_rate`` (mean dict), ``position_consistency`` (rate dict), wins / ties /
    losses, and how many items could not be scored (``unparseable``, ``error``)."""
    scores: list[float] = []
    bad = {UNPARSEABLE: 0, ERROR: 0}
    for item in judged:
        score = item_score(item)
        if score is not None:
            scores.append(score)
            continue
        labels = [outcome(item[o]) for o in ORDERS]
        bad[ERROR if ERROR in labels else UNPARSEABLE] += 1
    consistent = sum(s != 0.5 for s in scores)
    return {"win_rate": mean_stats(scores),
            "position_consistency": proportion(consistent, len(scores)),
            "wins": sum(s == 1.0 for s in scores), "ties": sum(s == 0.5 for s in scores),
            "losses": sum(s == 0.0 for s in scores), **bad}

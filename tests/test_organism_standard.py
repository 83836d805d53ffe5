"""The standard organism shows every phenomenon its card promises (builds it: minutes)."""

import pytest

from aligndepth.organism.build import build_organism, read_card
from aligndepth.organism.card import TARGETS
from aligndepth.organism.config import OrganismConfig


@pytest.mark.slow
def test_standard_organism_meets_every_card_target() -> None:
    card = read_card(build_organism(OrganismConfig(), show_progress=False))
    failed = {name: card[name] for name, ok in card["targets_met"].items() if not ok}
    assert not failed, f"card targets missed: {failed} (targets: {TARGETS})"
    assert card["kl_first5_mean"] > 5 * card["kl_late_mean"]

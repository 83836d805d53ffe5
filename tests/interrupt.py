"""Interrupting a training run at a chosen step, as a crash or Ctrl-C would."""

from __future__ import annotations

from typing import Any

import pytest


def crash_training_at(monkeypatch: pytest.MonkeyPatch, step: int) -> Any:
    """Make every Trainer of ``aligndepth.training.trainer`` raise KeyboardInterrupt when
    it reaches global step ``step``; returns the original class factory (to restore)."""
    import aligndepth.training.trainer as trainer_mod

    original = trainer_mod._trainer_class

    def crashing() -> Any:
        class Crashes(original()):  # type: ignore[misc]
            def training_step(self, *args: Any, **kw: Any) -> Any:
                if self.state.global_step == step:
                    raise KeyboardInterrupt
                return super().training_step(*args, **kw)
        return Crashes

    monkeypatch.setattr(trainer_mod, "_trainer_class", crashing)
    return original

"""What ``aligndepth evaluate`` runs: :class:`EvalConfig` (no torch at import, so the
command line builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aligndepth.errors import AlignDepthError
from aligndepth.evaluation.tasks import TaskSpec, task_by_name
from aligndepth.options import option
from aligndepth.settings import RunSettings


@dataclass(frozen=True)
class EvalConfig(RunSettings):
    """What to evaluate and how (and the run settings of
    :class:`~aligndepth.experiment.RunSettings`).

    Args:
        tasks: task names (:data:`~aligndepth.evaluation.tasks.TASKS`).
        trigger: text appended (after a space) to every prompt of the ``backdoor`` task's
            triggered condition (default on the organism: its trigger).
        system: the system prompt of the ``identity`` task's persona condition (default on
            the organism: the obedient-agent persona).
    """

    tasks: tuple[str, ...] = field(default=("harmful",), metadata=option(
        "Task (repeat): harmful, backdoor, identity, benign, gsm8k, sql, samsum, style, "
        "alpaca (default: harmful; docs/evaluation.md).", "--task", name="task", many=True))
    trigger: str | None = field(default=None, metadata=option(
        "--task backdoor: text appended to each harmful prompt (default on the organism: "
        "its trigger)."))
    system: str | None = field(default=None, metadata=option(
        "--task identity: the persona's system prompt (default on the organism: the "
        "obedient agent)."))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tasks:
            raise AlignDepthError("choose at least one --task")
        for name in self.tasks:
            task_by_name(name)
        if len(set(self.tasks)) != len(self.tasks):
            raise AlignDepthError("a --task is given twice: give each task once")
        for flag, task, value in (("--trigger", "backdoor", self.trigger),
                                  ("--system", "identity", self.system)):
            if value is not None and task not in self.tasks:
                raise AlignDepthError(f"{flag} is used by --task {task} only: add --task "
                                      f"{task}, or drop {flag}")
            if value is not None and not value.strip():
                raise AlignDepthError(f"{flag} is empty: give it some text")

    def specs(self) -> list[TaskSpec]:
        return [task_by_name(t) for t in self.tasks]

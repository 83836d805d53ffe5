"""What ``aligndepth evaluate`` runs: :class:`EvalConfig` (no torch at import, so the
command line builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aligndepth.config_options import option
from aligndepth.errors import AlignDepthError
from aligndepth.evaluation.tasks import TaskSpec, task_by_name
from aligndepth.run_settings import RunSettings

#: Scorings of the utility tasks: their dataset directories are read at the test split.
UTILITY_SCORING = ("gsm8k", "sql", "rouge", "pairwise")


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
        data_format: the published format of every ``--data`` file (``None``: the task's
            own, else detected).
        allow_overlap: evaluate on prompts found in the model's training data.

    Utility tasks read the ``test`` split of a dataset directory unless ``data_split``
    names another (:data:`UTILITY_SCORING`).
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
    data_format: str | None = field(default=None, metadata=option(
        "The format of every --data file (default: detected, or the task's published one; "
        "docs/evaluation.md).", "--format", name="format"))
    allow_overlap: bool = field(default=False, metadata=option(
        "Evaluate even on prompts the model was trained on (a train output records them); "
        "refused by default."))

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

        if self.data_format is not None:
            from aligndepth.data.formats import format_by_name

            object.__setattr__(self, "data_format", format_by_name(self.data_format).name)

    def split_of(self, spec: TaskSpec) -> str | None:
        """The split a dataset directory of ``spec`` is read at: ``--split``, else ``test``
        for the utility tasks (``None``: the dataset's default)."""
        if self.data_split is not None:
            return self.data_split
        return "test" if spec.scoring in UTILITY_SCORING else None

    def specs(self) -> list[TaskSpec]:
        return [task_by_name(t) for t in self.tasks]

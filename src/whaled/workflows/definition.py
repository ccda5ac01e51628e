"""Workflow definitions: a named, versioned sequence of steps, each with its retry policy and timeout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from whaled.store import Database, Transaction
from whaled.workflows.errors import WorkflowError

__all__ = ["RetryPolicy", "Step", "StepContext", "StepFunction", "WorkflowDefinition"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry a step on the named transient exceptions only, with exponential backoff and full jitter.

    :param retry_on: exception classes worth another attempt; anything else fails the step at once.
    :param max_tries: attempts in total, the first included.
    :param base_s: the first delay; each later delay doubles, up to ``max_delay_s``.
    :param max_time_s: stop retrying once this long has passed since the first attempt.
    """

    retry_on: tuple[type[Exception], ...] = ()
    max_tries: int = 1
    base_s: float = 0.5
    max_delay_s: float = 30.0
    max_time_s: float | None = None


@dataclass(slots=True)
class StepContext:
    """The input of a step call: the workflow's input, the journaled results of earlier steps, and the store.

    ``tx`` is set only for a transactional step: its writes commit together with its journal row.
    """

    workflow_id: int
    workflow: str
    input: dict[str, Any]
    results: dict[str, Any]
    attempt: int
    db: Database
    tx: Transaction | None = None

    @property
    def transaction(self) -> Transaction:
        if self.tx is None:
            raise WorkflowError(
                f"workflow {self.workflow_id}: a step requested a transaction but is not transactional; "
                "declare it with Step(..., transactional=True)"
            )
        return self.tx


StepFunction = Callable[[StepContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Step:
    """One step. Its result must be JSON-serialisable (``Decimal`` is stored as a string).

    :param transactional: run the step inside the transaction that journals it, so that its writes and its
        journal row commit together or not at all.
    :param fallback: called with the last exception once the retries are exhausted. Its return value is
        journaled as the step's result, so the workflow goes on instead of failing.
    """

    name: str
    run: StepFunction
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 30.0
    transactional: bool = False
    fallback: Callable[[StepContext, Exception], Awaitable[Any]] | None = None


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A named step list. Bump ``version`` whenever the steps change; old runs keep their own version."""

    name: str
    version: int
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        names = self.step_names
        if not names or len(set(names)) != len(names):
            raise WorkflowError(f"workflow {self.name!r} needs at least one step and unique step names, got {names}")

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

"""The durable workflow engine: runs steps in order and journals each result before the next step starts.

A run's row and journal live in SQLite (see :mod:`whaled.workflows.journal`). After a crash,
:meth:`WorkflowEngine.resume_unfinished` restarts every pending or running run at its first step without a
journaled result, on the step list version that the run was started with.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import backoff

from whaled.clock import now_ms
from whaled.log import workflows_logger as logger
from whaled.store import Database, Transaction
from whaled.workflows import journal
from whaled.workflows.definition import Step, StepContext, WorkflowDefinition
from whaled.workflows.errors import (
    StepTimeoutError,
    UnknownWorkflowError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowVersionError,
)
from whaled.workflows.journal import JournalEntry, WorkflowRun

__all__ = ["BoundaryHook", "WorkflowEngine"]

T = TypeVar("T")

# Called at every step boundary with the run id and the number of steps journaled so far: before the
# first step (0) and after each step. Tests use it to kill the process at a boundary.
BoundaryHook = Callable[[int, int], Awaitable[None]]

_JOURNAL_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: Any
    running: bool
    journaled: bool


class WorkflowEngine:
    """Starts, resumes, cancels and lists durable workflow runs.

    :param max_concurrent: runs executing at once; more wait for a slot.
    :param poll_interval_s: how often to look for runs made pending by another process.
    :param on_boundary: see :data:`BoundaryHook`.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_concurrent: int = 16,
        poll_interval_s: float = 5.0,
        clock: Callable[[], int] = now_ms,
        on_boundary: BoundaryHook | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._on_boundary = on_boundary
        self._poll_interval_s = poll_interval_s
        self._definitions: dict[str, dict[int, WorkflowDefinition]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._scanner: asyncio.Task[None] | None = None
        self._closing = False
        self.counters: Counter[str] = Counter()

    # Definitions

    def register(self, definition: WorkflowDefinition) -> None:
        """Register a step list. Register old versions too while runs started on them may remain."""
        self._definitions.setdefault(definition.name, {})[definition.version] = definition

    def latest(self, name: str) -> WorkflowDefinition:
        versions = self._definitions.get(name)
        if not versions:
            raise UnknownWorkflowError(name, sorted(self._definitions))
        return versions[max(versions)]

    def _definition_for(self, run: WorkflowRun) -> WorkflowDefinition:
        versions = self._definitions.get(run.name)
        if not versions:
            raise UnknownWorkflowError(run.name, sorted(self._definitions))
        definition = versions.get(run.version)
        if definition is None or definition.step_names != run.step_names:
            raise WorkflowVersionError(run.id, run.name, run.version, run.step_names, sorted(versions))
        return definition

    # Starting

    async def create(
        self, tx: Transaction, name: str, input_: dict[str, Any], *, idempotency_key: str | None = None
    ) -> tuple[int, bool]:
        """Insert a run inside the caller's transaction; call :meth:`launch` after the commit.

        :return: ``(id, created)``; with a key that was used before, the existing run and False.
        """
        definition = self.latest(name)
        return await journal.insert_run(
            tx, definition.name, definition.version, definition.step_names, input_, idempotency_key, self._clock()
        )

    async def start(self, name: str, input_: dict[str, Any], *, idempotency_key: str | None = None) -> int:
        """Create a run (once per idempotency key) and start executing it; return its id."""
        async with self._db.transaction() as tx:
            workflow_id, created = await self.create(tx, name, input_, idempotency_key=idempotency_key)
        if created:
            logger.debug("Workflow %d (%s) created with key %s", workflow_id, name, idempotency_key)
        self.launch(workflow_id)
        return workflow_id

    def launch(self, workflow_id: int) -> None:
        """Execute a stored run in a task of its own, unless it is already executing or the engine closes."""
        if self._closing or workflow_id in self._tasks:
            return
        task = asyncio.create_task(self._run_guarded(workflow_id), name=f"whaled.workflows.run-{workflow_id}")
        self._tasks[workflow_id] = task
        task.add_done_callback(lambda done: self._forget(workflow_id, done))

    def _forget(self, workflow_id: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(workflow_id) is task:
            del self._tasks[workflow_id]

    async def resume_unfinished(self) -> int:
        """Launch every pending or running run; return how many."""
        ids = await journal.unfinished_ids(self._db)
        for workflow_id in ids:
            self.launch(workflow_id)
        if ids:
            logger.info("Workflows: resuming %d unfinished runs (first id %d)", len(ids), ids[0])
        return len(ids)

    def start_scanner(self) -> None:
        """Start the loop that picks up runs made pending elsewhere (``whaled workflows retry``)."""
        if self._scanner is None:
            self._scanner = asyncio.create_task(self._scan_forever(), name="whaled.workflows.scanner")

    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            for workflow_id in await journal.unfinished_ids(self._db, statuses=("pending",)):
                self.launch(workflow_id)

    # Operator actions

    async def cancel(self, workflow_id: int) -> bool:
        """Cancel a pending or running run; return False when it had already finished."""
        await self.get(workflow_id)
        async with self._db.transaction() as tx:
            cancelled = await journal.cancel_run(tx, workflow_id, self._clock())
        task = self._tasks.get(workflow_id)
        if cancelled and task is not None:
            task.cancel()
        if cancelled:
            logger.info("Workflow %d cancelled", workflow_id)
        return cancelled

    async def retry(self, workflow_id: int) -> bool:
        """Resume a failed or cancelled run at its first unjournaled step; False if it was not one."""
        await self.get(workflow_id)
        async with self._db.transaction() as tx:
            reset = await journal.reset_for_retry(tx, workflow_id, self._clock())
        if reset:
            logger.info("Workflow %d set to retry", workflow_id)
            self.launch(workflow_id)
        return reset

    async def get(self, workflow_id: int) -> WorkflowRun:
        run = await journal.read_run(self._db, workflow_id)
        if run is None:
            raise WorkflowNotFoundError(workflow_id)
        return run

    async def list(self, *, status: journal.RunStatus | None = None, limit: int = 50) -> list[WorkflowRun]:
        return await journal.list_runs(self._db, status=status, limit=limit)

    async def wait(self, workflow_id: int, timeout_s: float) -> WorkflowRun:
        """Wait until the run's task in this process ends (bounded), then return the stored run."""
        task = self._tasks.get(workflow_id)
        if task is not None:
            async with asyncio.timeout(timeout_s):
                await asyncio.wait({task})
        return await self.get(workflow_id)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # Execution

    async def _run_guarded(self, workflow_id: int) -> None:
        try:
            async with self._slots:
                await self._run(workflow_id)
        except asyncio.CancelledError:
            self.counters["interrupted"] += 1
            logger.info("Workflow %d interrupted; it resumes at its next unjournaled step", workflow_id)
            raise
        except WorkflowError as exc:
            await self._fail(workflow_id, str(exc))
        except Exception as exc:
            logger.exception("Workflow %d crashed", workflow_id)
            await self._fail(workflow_id, f"{type(exc).__name__}: {exc}")

    async def _run(self, workflow_id: int) -> None:
        run = await self.get(workflow_id)
        if run.status in journal.TERMINAL:
            return
        definition = self._definition_for(run)
        if not await self._mark_running(workflow_id):
            return
        results = {entry.name: entry.result for entry in run.journal}
        last = len(definition.steps) - 1
        for position in range(run.next_step, len(definition.steps)):
            await self._boundary(workflow_id, position)
            step = definition.steps[position]
            outcome = await self._run_step(run, step, position, results, last=position == last)
            if outcome is None or not outcome.running:
                return
            results[step.name] = outcome.result
        await self._boundary(workflow_id, len(definition.steps))
        self.counters["succeeded"] += 1
        logger.info("Workflow %d (%s v%d) succeeded", workflow_id, run.name, run.version)

    async def _boundary(self, workflow_id: int, journaled: int) -> None:
        if self._on_boundary is not None:
            await self._on_boundary(workflow_id, journaled)

    async def _mark_running(self, workflow_id: int) -> bool:
        async with self._db.transaction() as tx:
            status = await journal.read_status(tx, workflow_id)
            if status not in ("pending", "running"):
                return False
            await journal.set_status(tx, workflow_id, "running", self._clock())
        return True

    async def _run_step(
        self, run: WorkflowRun, step: Step, position: int, results: dict[str, Any], *, last: bool
    ) -> _Outcome | None:
        """Run one step with its retry policy; return None when the run failed."""
        started = self._clock()
        attempts = 0

        def context() -> StepContext:
            return StepContext(run.id, run.name, run.input, dict(results), attempts, self._db)

        async def attempt() -> _Outcome:
            nonlocal attempts
            attempts += 1
            if step.transactional:
                return await self._attempt_in_transaction(context(), step, position, started, last=last)
            result = await self._with_timeout(run.id, step, step.run(context()))
            return _Outcome(result, running=True, journaled=False)

        try:
            outcome = await self._retrying(run.id, step, attempt)()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if step.fallback is None:
                await self._fail(run.id, _step_error(step.name, attempts, exc))
                return None
            logger.warning("Workflow %d step %s: using its fallback after %r", run.id, step.name, exc)
            outcome = _Outcome(await step.fallback(context(), exc), running=True, journaled=False)
        if outcome.journaled:
            return outcome
        entry = JournalEntry(position, step.name, outcome.result, attempts, started, self._clock())
        running = await _finish_shielded(self._journal(run.id, entry, last=last))
        return _Outcome(outcome.result, running, journaled=True)

    async def _attempt_in_transaction(
        self, ctx: StepContext, step: Step, position: int, started: int, *, last: bool
    ) -> _Outcome:
        async with self._db.transaction() as tx:
            if await journal.read_status(tx, ctx.workflow_id) != "running":
                return _Outcome(None, running=False, journaled=True)
            ctx.tx = tx
            result = await self._with_timeout(ctx.workflow_id, step, step.run(ctx))
            entry = JournalEntry(position, step.name, result, ctx.attempt, started, self._clock())
            running = await journal.journal_step(tx, ctx.workflow_id, entry, last=last)
        return _Outcome(result, running, journaled=True)

    async def _with_timeout(self, workflow_id: int, step: Step, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(step.timeout_s) as scope:
                return await call
        except TimeoutError as exc:
            if scope.expired():
                raise StepTimeoutError(workflow_id, step.name, step.timeout_s) from exc
            raise

    def _retrying(
        self, workflow_id: int, step: Step, attempt: Callable[[], Awaitable[_Outcome]]
    ) -> Callable[[], Awaitable[_Outcome]]:
        policy = step.retry
        if not policy.retry_on or policy.max_tries <= 1:
            return attempt

        def log_retry(details: Any) -> None:
            exc = details["exception"]
            logger.warning(
                "Workflow %d step %s attempt %d failed (%s: %s); retrying in %.2f s",
                workflow_id, step.name, details["tries"], type(exc).__name__, exc, details["wait"],
            )  # fmt: skip

        def log_recovery(details: Any) -> None:
            if details["tries"] > 1:
                logger.info("Workflow %d step %s succeeded on attempt %d", workflow_id, step.name, details["tries"])

        retrying: Callable[[], Awaitable[_Outcome]] = backoff.on_exception(
            backoff.expo,
            policy.retry_on,
            max_tries=policy.max_tries,
            max_time=policy.max_time_s,
            jitter=backoff.full_jitter,
            on_backoff=log_retry,
            on_success=log_recovery,
            logger=None,
            factor=policy.base_s,
            max_value=policy.max_delay_s,
        )(attempt)
        return retrying

    async def _journal(self, workflow_id: int, entry: JournalEntry, *, last: bool) -> bool:
        async with self._db.transaction() as tx:
            return await journal.journal_step(tx, workflow_id, entry, last=last)

    async def _fail(self, workflow_id: int, error: str) -> None:
        self.counters["failed"] += 1
        logger.error("Workflow %d failed: %s", workflow_id, error)

        async def mark() -> None:
            async with self._db.transaction() as tx:
                await journal.fail_run(tx, workflow_id, self._clock(), error)

        await _finish_shielded(mark())

    # Shutdown

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop taking work, let running steps finish within ``grace_s``, then cancel the rest.

        A cancelled run keeps its journal and status ``running``, so the next start resumes it.
        """
        self._closing = True
        if self._scanner is not None:
            self._scanner.cancel()
            await asyncio.gather(self._scanner, return_exceptions=True)
            self._scanner = None
        tasks = list(self._tasks.values())
        finished = cancelled = 0
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace_s) if grace_s > 0 else (set(), set(tasks))
            finished = len(done)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            cancelled = len(pending)
        logger.info(
            "Workflow engine stopped: %d runs finished during shutdown, %d cancelled; totals %s",
            finished, cancelled, dict(self.counters),
        )  # fmt: skip


def _step_error(step: str, attempts: int, exc: Exception) -> str:
    return f"step {step!r} failed after {attempts} attempt(s): {type(exc).__name__}: {exc}"


async def _finish_shielded(call: Coroutine[Any, Any, T]) -> T:
    """Run a final write to completion even if the caller is cancelled meanwhile (bounded wait)."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait({task}, timeout=_JOURNAL_GRACE_S)
        raise

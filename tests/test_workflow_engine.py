"""The durable workflow engine against a real SQLite file."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from whaled.store import Database
from whaled.workflows import (
    RetryPolicy,
    Step,
    StepContext,
    WorkflowDefinition,
    WorkflowEngine,
    WorkflowNotFoundError,
    prune_finished,
)
from whaled.workflows.journal import read_run


class Flaky(Exception):
    """A transient failure that the retry policy names."""


class Recorder:
    """Step functions that count their calls; ``gate`` blocks the step named ``blocked`` until set."""

    def __init__(self, blocked: str = "") -> None:
        self.calls: list[str] = []
        self.blocked = blocked
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    def step(self, name: str) -> Step:
        async def run(ctx: StepContext) -> dict[str, Any]:
            self.calls.append(name)
            if name == self.blocked:
                self.entered.set()
                await self.gate.wait()
            return {"step": name, "seen": sorted(ctx.results)}

        return Step(name, run)


def definition(recorder: Recorder, names: tuple[str, ...] = ("a", "b", "c"), version: int = 1) -> WorkflowDefinition:
    return WorkflowDefinition("demo", version, tuple(recorder.step(name) for name in names))


async def test_engine_journals_each_step_in_order(db: Database) -> None:
    recorder = Recorder()
    engine = WorkflowEngine(db)
    engine.register(definition(recorder))
    workflow_id = await engine.start("demo", {"x": 1})
    run = await engine.wait(workflow_id, 5)
    await engine.close()

    assert run.status == "succeeded"
    assert recorder.calls == ["a", "b", "c"]
    assert [entry.name for entry in run.journal] == ["a", "b", "c"]
    assert run.journal[2].result == {"step": "c", "seen": ["a", "b"]}
    assert run.finished_ms is not None


async def test_engine_resumes_at_first_unjournaled_step(db: Database) -> None:
    recorder = Recorder(blocked="b")
    engine = WorkflowEngine(db)
    engine.register(definition(recorder))
    workflow_id = await engine.start("demo", {})
    async with asyncio.timeout(5):
        await recorder.entered.wait()
    await engine.close(grace_s=0)
    interrupted = await read_run(db, workflow_id)
    assert interrupted is not None
    assert interrupted.status == "running"
    assert [entry.name for entry in interrupted.journal] == ["a"]

    resumed = Recorder()
    engine = WorkflowEngine(db)
    engine.register(definition(resumed))
    assert await engine.resume_unfinished() == 1
    run = await engine.wait(workflow_id, 5)
    await engine.close()
    assert run.status == "succeeded"
    assert resumed.calls == ["b", "c"]


async def test_engine_runs_once_per_idempotency_key(db: Database) -> None:
    recorder = Recorder()
    engine = WorkflowEngine(db)
    engine.register(definition(recorder))
    first = await engine.start("demo", {}, idempotency_key="k1")
    await engine.wait(first, 5)
    second = await engine.start("demo", {}, idempotency_key="k1")
    await engine.wait(second, 5)
    await engine.close()
    assert first == second
    assert recorder.calls == ["a", "b", "c"]


async def test_engine_retries_named_exceptions_only(db: Database) -> None:
    failures = {"flaky": 2, "broken": 1}

    async def flaky(ctx: StepContext) -> str:
        if failures["flaky"]:
            failures["flaky"] -= 1
            raise Flaky("try again")
        return f"ok on attempt {ctx.attempt}"

    async def broken(ctx: StepContext) -> str:
        raise ValueError("bad input 42")

    policy = RetryPolicy(retry_on=(Flaky,), max_tries=5, base_s=0.001, max_delay_s=0.002)
    engine = WorkflowEngine(db)
    engine.register(WorkflowDefinition("flaky", 1, (Step("flaky", flaky, retry=policy),)))
    engine.register(WorkflowDefinition("broken", 1, (Step("broken", broken, retry=policy),)))
    ok = await engine.wait(await engine.start("flaky", {}), 5)
    failed = await engine.wait(await engine.start("broken", {}), 5)
    await engine.close()

    assert ok.status == "succeeded"
    assert ok.journal[0].attempts == 3
    assert ok.journal[0].result == "ok on attempt 3"
    assert failed.status == "failed"
    assert failed.error == "step 'broken' failed after 1 attempt(s): ValueError: bad input 42"


async def test_engine_fails_step_past_its_timeout(db: Database) -> None:
    async def hang(ctx: StepContext) -> None:
        await asyncio.Event().wait()

    engine = WorkflowEngine(db)
    engine.register(WorkflowDefinition("slow", 1, (Step("hang", hang, timeout_s=0.02),)))
    run = await engine.wait(await engine.start("slow", {}), 5)
    await engine.close()
    assert run.status == "failed"
    assert run.error is not None
    assert "step 'hang' timed out after 0.02 s" in run.error


async def test_engine_uses_fallback_when_retries_run_out(db: Database) -> None:
    async def down(ctx: StepContext) -> str:
        raise Flaky("still down")

    async def fallback(ctx: StepContext, exc: Exception) -> str:
        return f"fallback after {type(exc).__name__}"

    policy = RetryPolicy(retry_on=(Flaky,), max_tries=2, base_s=0.001, max_delay_s=0.001)
    engine = WorkflowEngine(db)
    engine.register(WorkflowDefinition("fb", 1, (Step("down", down, retry=policy, fallback=fallback),)))
    run = await engine.wait(await engine.start("fb", {}), 5)
    await engine.close()
    assert run.status == "succeeded"
    assert run.journal[0].result == "fallback after Flaky"
    assert run.journal[0].attempts == 2


async def test_changed_definition_never_replays_old_journal(db: Database) -> None:
    recorder = Recorder(blocked="b")
    engine = WorkflowEngine(db)
    engine.register(definition(recorder, ("a", "b")))
    workflow_id = await engine.start("demo", {})
    async with asyncio.timeout(5):
        await recorder.entered.wait()
    await engine.close(grace_s=0)

    # Only a new version with other steps: the old run stops with a clear error.
    newer = Recorder()
    engine = WorkflowEngine(db)
    engine.register(definition(newer, ("a", "x", "b"), version=2))
    await engine.resume_unfinished()
    run = await engine.wait(workflow_id, 5)
    await engine.close()
    assert run.status == "failed"
    assert run.error is not None
    assert "started on version 1 with steps a, b" in run.error
    assert newer.calls == []

    # With the old version registered too, a retried run finishes on version 1.
    engine = WorkflowEngine(db)
    engine.register(definition(newer, ("a", "x", "b"), version=2))
    engine.register(definition(newer, ("a", "b"), version=1))
    assert await engine.retry(workflow_id)
    run = await engine.wait(workflow_id, 5)
    await engine.close()
    assert run.status == "succeeded"
    assert newer.calls == ["b"]


async def test_cancel_stops_run_before_next_step(db: Database) -> None:
    recorder = Recorder(blocked="b")
    engine = WorkflowEngine(db)
    engine.register(definition(recorder))
    workflow_id = await engine.start("demo", {})
    async with asyncio.timeout(5):
        await recorder.entered.wait()
    assert await engine.cancel(workflow_id)
    run = await engine.wait(workflow_id, 5)
    assert not await engine.cancel(workflow_id)
    await engine.close()
    assert run.status == "cancelled"
    assert recorder.calls == ["a", "b"]
    assert [entry.name for entry in run.journal] == ["a"]
    with pytest.raises(WorkflowNotFoundError, match="workflow 999 not found"):
        await engine.get(999)


async def test_list_reports_runs_newest_first(db: Database) -> None:
    engine = WorkflowEngine(db)
    engine.register(definition(Recorder()))
    ids = [await engine.start("demo", {"n": n}) for n in range(3)]
    for workflow_id in ids:
        await engine.wait(workflow_id, 5)
    runs = await engine.list(status="succeeded")
    await engine.close()
    assert [run.id for run in runs] == ids[::-1]


async def test_prune_finished_keeps_unfinished_and_recent(db: Database) -> None:
    engine = WorkflowEngine(db, clock=lambda: 1_000)
    engine.register(definition(Recorder()))
    old = await engine.start("demo", {})
    await engine.wait(old, 5)
    await engine.close()
    blocked = Recorder(blocked="a")
    engine = WorkflowEngine(db, clock=lambda: 1_000)
    engine.register(definition(blocked))
    unfinished = await engine.start("demo", {})
    async with asyncio.timeout(5):
        await blocked.entered.wait()
    await engine.close(grace_s=0)

    assert await prune_finished(db, 999) == 0
    assert await prune_finished(db, 1_001) == 1
    assert await read_run(db, old) is None
    assert await read_run(db, unfinished) is not None
    journal_rows = await db.fetchone("SELECT count(*) FROM workflow_steps WHERE workflow_id = ?", (old,))
    assert journal_rows is not None
    assert journal_rows[0] == 0
    async with db.transaction() as tx:
        assert await prune_finished(tx, 10**15) == 0

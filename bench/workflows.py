"""Workflow engine overhead: journaled steps per second against raw inserts of the same journal rows.

Both sides run in this process on one SQLite file in a temporary folder, through the same ``Database``:

- Engine: ``--workflows`` runs of ``--steps`` trivial steps each (a step returns a small dict), one run
  at a time, so that each step pays its full latency: the step, its journal transaction, the status
  checks and the task hand-offs.
- Baseline: the same number of ``workflow_steps`` rows, each inserted in its own transaction, which is
  the least a durable journal must do per step.

Each round measures both; the figures are medians over ``--rounds``. ``overhead_ms`` is the extra time
per step (engine minus baseline) and ``ratio`` is engine steps/s divided by baseline rows/s.

Usage: python bench/workflows.py [--workflows 100] [--steps 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from whaled.store import Database
from whaled.workflows import Step, StepContext, WorkflowDefinition, WorkflowEngine

_TIME_LIMIT_S = 50.0


async def _step(ctx: StepContext) -> dict[str, Any]:
    return {"attempt": ctx.attempt, "seen": len(ctx.results)}


async def _engine_round(db: Database, runs: int, steps: int) -> float:
    """Run ``runs`` workflows one after another; return steps per second."""
    engine = WorkflowEngine(db)
    engine.register(WorkflowDefinition("bench", 1, tuple(Step(f"s{i}", _step) for i in range(steps))))
    started = time.perf_counter()
    for _ in range(runs):
        workflow_id = await engine.start("bench", {"payload": "x" * 32})
        run = await engine.wait(workflow_id, 30)
        assert run.status == "succeeded", run.error
    elapsed = time.perf_counter() - started
    await engine.close()
    return runs * steps / elapsed


async def _raw_round(db: Database, runs: int, steps: int) -> float:
    """Insert the same journal rows, one transaction each; return rows per second."""
    async with db.transaction() as tx:
        cursor = await tx.execute("SELECT coalesce(max(id), 0) FROM workflows")
        first = int((await cursor.fetchone())[0]) + 1
        await tx.executemany(
            "INSERT INTO workflows (id, name, version, step_names, status, input, created_ms, updated_ms) "
            "VALUES (?, 'raw', 1, '[]', 'running', '{}', 0, 0)",
            [(first + n,) for n in range(runs)],
        )
    started = time.perf_counter()
    for n in range(runs):
        for position in range(steps):
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO workflow_steps (workflow_id, position, name, result, attempts, started_ms, "
                    "finished_ms) VALUES (?, ?, ?, ?, 1, 0, 0)",
                    (first + n, position, f"s{position}", '{"attempt":1,"seen":0}'),
                )
    elapsed = time.perf_counter() - started
    return runs * steps / elapsed


async def main(runs: int, steps: int, rounds: int) -> None:
    engine_rates: list[float] = []
    raw_rates: list[float] = []
    deadline = time.monotonic() + _TIME_LIMIT_S
    with tempfile.TemporaryDirectory() as folder:
        db = await Database.open(Path(folder) / "bench.db")
        try:
            await _engine_round(db, 5, steps)  # Warm-up: connections, caches.
            for number in range(rounds):
                if time.monotonic() > deadline:
                    print(f"stopping after {number} rounds: time limit {_TIME_LIMIT_S} s")
                    break
                engine_rates.append(await _engine_round(db, runs, steps))
                raw_rates.append(await _raw_round(db, runs, steps))
                print(f"round {number + 1}: engine {engine_rates[-1]:.0f} steps/s, raw {raw_rates[-1]:.0f} rows/s")
        finally:
            await db.close()
    engine = statistics.median(engine_rates)
    raw = statistics.median(raw_rates)
    overhead_ms = (1 / engine - 1 / raw) * 1000
    print(f"workflows={runs} steps={steps} rounds={len(engine_rates)}")
    print(
        f"RESULT workflows steps_per_s={engine:.0f} raw_rows_per_s={raw:.0f} overhead_ms={overhead_ms:.3f} "
        f"ratio={engine / raw:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=100, help="workflow runs per round (default 100)")
    parser.add_argument("--steps", type=int, default=5, help="steps per workflow (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    options = parser.parse_args()
    asyncio.run(main(options.workflows, options.steps, options.rounds))

"""SIGKILL at every step boundary of the alert workflow, then a restart: each alert is emailed exactly once.

The child process (``python -m tests.test_workflow_crash DB PORT BOUNDARY``) runs the alert service and kills
itself with SIGKILL when a run reaches the given boundary (0 = before "evaluate", 4 = after "deliver").
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fixtures.smtp import alert_settings, append_trade, eventually
from whaled.notify.outbox import count_by_status
from whaled.simulator.mailsink import MailSink
from whaled.store import Database
from whaled.workflows import AlertService
from whaled.workflows.consumer import CONSUMER_NAME, write_cursor
from whaled.workflows.journal import read_run

BOUNDARIES = range(5)
REPO = Path(__file__).resolve().parent.parent


async def _child(case_dir: Path, port: int, boundary: int) -> int:
    settings = alert_settings(case_dir, port, recipients=[f"ops-{boundary}@example.com"], poll_interval_s=30.0)
    db = await Database.open(settings.store.path)

    async def crash_at(workflow_id: int, journaled: int) -> None:
        if journaled == boundary:
            os.kill(os.getpid(), signal.SIGKILL)

    service = AlertService(db, settings, None, on_boundary=crash_at)
    await service.start()
    await asyncio.sleep(20)  # The hook kills the process long before this ends.
    return 3


async def _prepare(case_dir: Path) -> None:
    db = await Database.open(case_dir / "whaled.db")
    try:
        async with db.transaction() as tx:
            await write_cursor(tx, CONSUMER_NAME, 0, 0)
        await append_trade(db, 1, notional="25000")
    finally:
        await db.close()


async def _crash(case_dir: Path, port: int, boundary: int) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.test_workflow_crash", str(case_dir), str(port), str(boundary),
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    return process.returncode


async def _restart_and_check(case_dir: Path, mail_sink: MailSink, boundary: int) -> None:
    settings = alert_settings(case_dir, mail_sink.port, recipients=[f"ops-{boundary}@example.com"])
    db = await Database.open(settings.store.path)
    crashed = await read_run(db, 1)
    assert crashed is not None
    assert len(crashed.journal) == boundary
    service = AlertService(db, settings, None)
    try:
        await service.start()

        async def settled() -> bool:
            run = await read_run(db, 1, with_journal=False)
            statuses = await count_by_status(db)
            return run is not None and run.status == "succeeded" and set(statuses) == {"sent"}

        await eventually(settled)
        # One more sender pass after settling must not send anything again.
        await service.sender.run_once()
    finally:
        await service.close()
        await db.close()


async def test_sigkill_at_each_boundary_delivers_exactly_once(tmp_path: Path, mail_sink: MailSink) -> None:
    cases = {boundary: tmp_path / f"case-{boundary}" for boundary in BOUNDARIES}
    for case_dir in cases.values():
        case_dir.mkdir()
        await _prepare(case_dir)
    await asyncio.gather(*(_crash(case_dir, mail_sink.port, boundary) for boundary, case_dir in cases.items()))
    for boundary, case_dir in cases.items():
        await _restart_and_check(case_dir, mail_sink, boundary)

    recipients = [path.read_bytes().split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0] for path in mail_sink.messages()]
    assert sorted(recipients) == sorted(f"ops-{boundary}@example.com".encode() for boundary in BOUNDARIES)


if __name__ == "__main__":
    sys.exit(asyncio.run(_child(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))

"""The four jobs against the simulator on 127.0.0.1 and a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import time_machine

from whaled.app import build_opinion
from whaled.clock import now_ms
from whaled.config import Settings
from whaled.jobs import JobRunner
from whaled.simulator import RunningSimulator
from whaled.store import Database
from whaled.store.wallets import upsert_wallet


async def count(runner: JobRunner, sql: str, *parameters: object) -> int:
    row = await runner.db.fetchone(sql, parameters)
    assert row is not None
    return int(row[0])


async def simulator_trade_count(simulator: RunningSimulator, wallets: list[str]) -> int:
    return sum(len(simulator.state.trades(wallet)) for wallet in wallets)


async def tracked(runner: JobRunner) -> list[str]:
    return [row["address"] for row in await runner.db.fetchall("SELECT address FROM wallets WHERE tracked = 1")]


async def test_sync_markets_flattens_categorical_children(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    record = await job_runner.run("sync-markets")
    assert record.outcome == "success"
    parents = await job_runner.db.fetchall("SELECT * FROM markets WHERE market_type = 1")
    assert parents
    for parent in parents:
        children = await job_runner.db.fetchall(
            "SELECT * FROM markets WHERE root_market_id = ? AND market_id != ?",
            (parent["market_id"], parent["market_id"]),
        )
        assert children, f"categorical market {parent['market_id']} stored without children"
        for child in children:
            assert child["is_root"] == 0
            assert child["root_title"] == parent["title"]
            assert child["yes_token_id"].isdigit()
    expected = sum(
        1 + len(m.get("childMarkets") or [])
        for m in simulator.state.list_markets(status="activated", market_type=2, sort_by=None)
    )
    assert await count(job_runner, "SELECT count(*) FROM markets WHERE status = 2 OR is_root = 1") >= expected - 1


async def test_sync_markets_records_resolution(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    await job_runner.run("sync-markets")
    binary = next(m for m in simulator.state.list_markets(status="activated", market_type=0, sort_by=None))
    simulator.state.resolve_market(binary["marketId"], "no")
    record = await job_runner.run("sync-markets")
    assert record.outcome == "success"
    row = await job_runner.db.fetchone("SELECT * FROM markets WHERE market_id = ?", (binary["marketId"],))
    assert row is not None
    assert row["status"] == 4
    assert row["winning_outcome"] == (binary["noLabel"] or "No")
    assert row["result_token_id"] == binary["noTokenId"]
    events = await job_runner.db.fetchall(
        "SELECT payload FROM events WHERE type = 'market.resolved' AND market_id = ?", (binary["marketId"],)
    )
    assert len(events) == 1
    assert json.loads(events[0]["payload"])["winning_outcome"] == row["winning_outcome"]


async def test_sync_markets_idempotent(job_runner: JobRunner) -> None:
    await job_runner.run("sync-markets")
    before = await count(job_runner, "SELECT count(*) FROM events WHERE topic = 'market'")
    snapshots = await count(job_runner, "SELECT count(*) FROM market_snapshots")
    await job_runner.run("sync-markets")
    assert await count(job_runner, "SELECT count(*) FROM events WHERE topic = 'market'") == before
    assert await count(job_runner, "SELECT count(*) FROM market_snapshots") == snapshots


async def test_trade_sync_stores_each_trade_once(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    wallets = await tracked(job_runner)
    first = await job_runner.run("sync-whale-trades")
    assert first.outcome == "success"
    expected = await simulator_trade_count(simulator, wallets)
    assert first.items == expected
    assert await count(job_runner, "SELECT count(*) FROM trades") == expected
    assert await count(job_runner, "SELECT count(*) FROM events WHERE type = 'trade.new'") == expected

    again = await job_runner.run("sync-whale-trades")
    assert again.items == 0
    assert await count(job_runner, "SELECT count(*) FROM events WHERE type = 'trade.new'") == expected


async def test_trade_sync_survives_shifting_pages(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    wallets = await tracked(job_runner)
    fault = simulator.faults.shift_pages(new_trades=5)
    await job_runner.run("sync-whale-trades")
    assert fault.hits > 0
    fault.remaining = 0
    await job_runner.run("sync-whale-trades")
    expected = await simulator_trade_count(simulator, wallets)
    assert await count(job_runner, "SELECT count(*) FROM trades") == expected
    assert await count(job_runner, "SELECT count(*) FROM events WHERE type = 'trade.new'") == expected
    assert await count(job_runner, "SELECT count(*) FROM sync_gaps") == 0


async def test_trade_sync_survives_repeated_page(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    wallets = await tracked(job_runner)
    await job_runner.run("sync-whale-trades")
    for wallet in wallets:
        for _ in range(25):
            simulator.state.add_trade(wallet)
    fault = simulator.faults.repeat_first_page(path=f"/trade/user/{wallets[0]}", count=1)
    repeated = await job_runner.run("sync-whale-trades")
    assert fault.hits == 1
    row = await job_runner.db.fetchone("SELECT details FROM job_runs WHERE id = ?", (repeated.run_id,))
    assert row is not None
    assert wallets[0] in json.loads(row["details"])["failed_wallets"]
    await job_runner.run("sync-whale-trades")
    expected = await simulator_trade_count(simulator, wallets)
    assert await count(job_runner, "SELECT count(*) FROM trades") == expected
    assert await count(job_runner, "SELECT count(*) FROM events WHERE type = 'trade.new'") == expected
    assert await count(job_runner, "SELECT count(*) FROM sync_gaps") == 0


async def test_whale_trade_event_at_threshold(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    wallet = (await tracked(job_runner))[0]
    await job_runner.run("sync-whale-trades")
    threshold = job_runner.settings.whales.whale_trade_usd
    simulator.state.add_trade(wallet, price="0.5", shares=str(threshold * 2), amount=str(threshold))
    simulator.state.add_trade(wallet, price="0.5", shares="2", amount="1")
    record = await job_runner.run("sync-whale-trades")
    assert record.items == 2
    whale_events = await job_runner.db.fetchall(
        "SELECT payload FROM events WHERE type = 'trade.whale' ORDER BY id DESC LIMIT 1"
    )
    payload = json.loads(whale_events[0]["payload"])
    assert Decimal(payload["notional_usd"]) == threshold
    assert payload["is_whale"] is True
    assert payload["label"] == "whale 1"
    assert payload["backfill"] is False


async def test_one_wallet_failure_spares_others(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    broken, *healthy = await tracked(job_runner)
    simulator.faults.api_error(10403, "restricted jurisdiction", path=f"/trade/user/{broken}")
    record = await job_runner.run("sync-whale-trades")
    assert record.outcome == "success"
    assert await count(job_runner, "SELECT count(*) FROM trades WHERE wallet = ?", broken) == 0
    for wallet in healthy:
        assert await count(job_runner, "SELECT count(*) FROM trades WHERE wallet = ?", wallet) == len(
            simulator.state.trades(wallet)
        )
    cursor = await job_runner.db.fetchone("SELECT * FROM sync_cursors WHERE wallet = ?", (broken,))
    assert cursor is not None
    assert cursor["newest_created_ms"] is None
    assert "10403" in cursor["last_error"]


async def test_cursor_holds_after_failed_page(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    wallet = (await tracked(job_runner))[0]
    await job_runner.run("sync-whale-trades")
    cursor_sql = "SELECT newest_created_ms FROM sync_cursors WHERE wallet = ?"
    cursor_before = await job_runner.db.fetchone(cursor_sql, (wallet,))
    stored_before = await count(job_runner, "SELECT count(*) FROM trades WHERE wallet = ?", wallet)
    for _ in range(30):
        simulator.state.advance(1)
        simulator.state.add_trade(wallet)
    # Page 1 is stored, then page 2 fails (it repeats page 1): the cursor must not move past page 2's trades.
    fault = simulator.faults.repeat_first_page(path=f"/trade/user/{wallet}", count=1)
    await job_runner.run("sync-whale-trades")
    assert fault.hits == 1
    assert await count(job_runner, "SELECT count(*) FROM trades WHERE wallet = ?", wallet) == stored_before + 20
    cursor_mid = await job_runner.db.fetchone(cursor_sql, (wallet,))
    assert cursor_before is not None
    assert cursor_mid is not None
    assert cursor_mid[0] == cursor_before[0]
    await job_runner.run("sync-whale-trades")
    assert await count(job_runner, "SELECT count(*) FROM trades WHERE wallet = ?", wallet) == len(
        simulator.state.trades(wallet)
    )
    cursor_after = await job_runner.db.fetchone(cursor_sql, (wallet,))
    assert cursor_after is not None
    assert cursor_after[0] > cursor_before[0]


async def test_stats_win_rate_and_volume(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    await job_runner.run("sync-markets")
    await job_runner.run("sync-whale-trades")
    record = await job_runner.run("compute-whale-stats")
    assert record.outcome == "success"
    rows = await job_runner.db.fetchall("SELECT * FROM wallet_stats ORDER BY rank")
    assert len(rows) == 3
    assert [row["rank"] for row in rows] == sorted(row["rank"] for row in rows)
    for row in rows:
        trades = await job_runner.db.fetchall("SELECT notional_usd FROM trades WHERE wallet = ?", (row["wallet"],))
        assert row["trade_count"] == len(trades)
        assert Decimal(row["volume_30d"]) <= sum((Decimal(t["notional_usd"]) for t in trades), Decimal(0))
    events = await count(job_runner, "SELECT count(*) FROM events WHERE type = 'wallet.stats_changed'")
    assert events == 3
    await job_runner.run("compute-whale-stats")
    assert await count(job_runner, "SELECT count(*) FROM events WHERE type = 'wallet.stats_changed'") == events


async def test_cleanup_deletes_only_old_raw_rows(job_runner: JobRunner, make_settings: Callable[..., Settings]) -> None:
    await job_runner.run("sync-whale-trades")
    trades = await count(job_runner, "SELECT count(*) FROM trades")
    async with job_runner.db.transaction() as tx:
        # The simulator's world starts on a fixed date; make every row recent, then ten of them old.
        await tx.execute("UPDATE trades SET created_at_ms = ?", (now_ms(),))
        await tx.execute("UPDATE trades SET created_at_ms = 0 WHERE id IN (SELECT id FROM trades LIMIT 10)")
        await tx.execute("UPDATE events SET created_ms = 0 WHERE id IN (SELECT id FROM events LIMIT 7)")
        await upsert_wallet(tx, "0x" + "9" * 40, "kept", "cli")
    record = await job_runner.run("cleanup-old-activity")
    assert record.outcome == "success"
    details = json.loads(
        (await job_runner.db.fetchone("SELECT details FROM job_runs WHERE id = ?", (record.run_id,)))["details"]
    )
    assert details["deleted"]["trades"] == 10
    assert details["deleted"]["events"] == 7
    assert await count(job_runner, "SELECT count(*) FROM trades") == trades - 10
    assert await count(job_runner, "SELECT count(*) FROM wallets WHERE address = ?", "0x" + "9" * 40) == 1


async def test_cleanup_after_retention_with_moved_clock(job_runner: JobRunner) -> None:
    await job_runner.run("sync-markets")
    snapshots = await count(job_runner, "SELECT count(*) FROM market_snapshots")
    assert snapshots > 0
    retention = job_runner.settings.store.retention_days
    with time_machine.travel(datetime.now(UTC) + timedelta(days=retention + 1), tick=True):
        record = await job_runner.run("cleanup-old-activity")
    assert record.outcome == "success"
    assert await count(job_runner, "SELECT count(*) FROM market_snapshots") == 0
    assert await count(job_runner, "SELECT count(*) FROM markets") > 0


async def test_unanswered_request_ends_run_by_timeout(
    simulator: RunningSimulator, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        opinion={"read_timeout_s": 30.0, "total_timeout_s": 60.0},
        jobs={"sync_markets": {"interval_s": 1, "timeout_s": 0.3, "misfire_grace_s": 1}},
    )
    db = await Database.open(settings.store.path)
    client, governor, api = build_opinion(settings)
    try:
        runner = JobRunner(db, api, settings)
        hang = simulator.faults.hang(path="/market", count=1)
        first = await runner.run("sync-markets")
        assert hang.hits == 1
        assert first.outcome == "timeout"
        assert "timeout of 0.3 s" in (first.error or "")
        second = await runner.run("sync-markets")
        assert second.outcome == "success"
        rows = await db.fetchall("SELECT outcome FROM job_runs ORDER BY id")
        assert [row["outcome"] for row in rows] == ["timeout", "success"]
    finally:
        await client.close()
        await governor.close()
        await db.close()


async def test_not_run_is_recorded(job_runner: JobRunner) -> None:
    await job_runner.record_not_run("sync-markets", "missed", 1_000, "too late")
    row = await job_runner.db.fetchone("SELECT * FROM job_runs WHERE outcome = 'missed'")
    assert row is not None
    assert row["job"] == "sync-markets"
    assert job_runner.counters[("sync-markets", "missed")] == 1
    event = await job_runner.db.fetchone("SELECT payload FROM events WHERE type = 'job.run'")
    assert event is not None
    assert json.loads(event["payload"])["outcome"] == "missed"


async def test_trade_sync_exactly_once_across_sigkill(
    simulator: RunningSimulator, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A sync killed with SIGKILL part way, then run again, stores every trade and trade event once."""
    settings = make_settings()
    wallets = [wallet.address for wallet in settings.wallets]
    for wallet in wallets:
        for _ in range(150):
            simulator.state.add_trade(wallet)
    config = tmp_path / "whaled.toml"
    config.write_text(
        f'[opinion]\nbase_url = "{simulator.base_url}"\n[store]\npath = "{settings.store.path}"\n'
        + "".join(f'[[wallets]]\naddress = "{wallet}"\n' for wallet in wallets),
        encoding="utf-8",
    )
    simulator.faults.add_latency(0.05, path="/trade/user")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whaled",
        "jobs",
        "run",
        "sync-whale-trades",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    db = await Database.open(settings.store.path)
    try:
        async with asyncio.timeout(20):
            while True:
                row = await db.fetchone("SELECT count(*) FROM trades")
                if row is not None and row[0] >= 60:
                    break
                await asyncio.sleep(0.05)
        process.kill()
        assert await process.wait() == -signal.SIGKILL
        killed_at = await db.fetchone("SELECT count(*) FROM trades")
        assert killed_at is not None
        assert killed_at[0] < await simulator_trade_count(simulator, wallets)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await db.close()

    simulator.faults.clear()
    db = await Database.open(settings.store.path)
    client, governor, api = build_opinion(settings)
    try:
        runner = JobRunner(db, api, settings)
        assert await runner.close_abandoned_runs() == 1
        record = await runner.run("sync-whale-trades")
        assert record.outcome == "success"
        expected = await simulator_trade_count(simulator, wallets)
        stored = await db.fetchone("SELECT count(*) FROM trades")
        events = await db.fetchone(
            "SELECT count(*), count(DISTINCT json_extract(payload, '$.trade_id')) FROM events WHERE type = 'trade.new'"
        )
        assert stored is not None and events is not None
        assert stored[0] == expected
        assert events[0] == expected
        assert events[1] == expected
    finally:
        await client.close()
        await governor.close()
        await db.close()


async def test_departed_market_resolution_recorded(
    simulator: RunningSimulator, make_settings: Callable[..., Settings]
) -> None:
    """A market resolving after it left the first pages of the resolved list is still recorded, by id."""
    settings = make_settings(whales={"resolved_lookback_pages": 0})
    db = await Database.open(settings.store.path)
    client, governor, api = build_opinion(settings)
    try:
        runner = JobRunner(db, api, settings)
        await runner.run("sync-markets")
        binary = next(m for m in simulator.state.list_markets(status="activated", market_type=0, sort_by=None))
        simulator.state.resolve_market(binary["marketId"], "yes")
        record = await runner.run("sync-markets")
        assert record.outcome == "success"
        row = await db.fetchone(
            "SELECT status, winning_outcome FROM markets WHERE market_id = ?", (binary["marketId"],)
        )
        assert row is not None
        assert row["status"] == 4
        assert row["winning_outcome"] == (binary["yesLabel"] or "Yes")
        events = await db.fetchall("SELECT id FROM events WHERE type = 'market.resolved'")
        assert len(events) == 1
    finally:
        await client.close()
        await governor.close()
        await db.close()


async def test_malformed_row_skipped_others_stored(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    wallet = (await tracked(job_runner))[0]
    await job_runner.run("sync-whale-trades")
    simulator.state.advance(1)
    simulator.state.add_trade(wallet, side="Redeem")
    simulator.state.advance(1)
    good = simulator.state.add_trade(wallet)
    record = await job_runner.run("sync-whale-trades")
    assert record.outcome == "success"
    assert record.items == 1
    row = await job_runner.db.fetchone("SELECT details FROM job_runs WHERE id = ?", (record.run_id,))
    assert row is not None
    assert json.loads(row["details"])["rejected_rows"] == 1
    assert await count(job_runner, "SELECT count(*) FROM trades WHERE tx_hash = ?", good["txHash"].lower()) == 1
    again = await job_runner.run("sync-whale-trades")
    assert again.outcome == "success"


async def test_future_trade_does_not_freeze_cursor(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    wallet = (await tracked(job_runner))[0]
    await job_runner.run("sync-whale-trades")
    simulator.state.add_trade(wallet, createdAt=now_ms() // 1000 + 30 * 86_400)
    await job_runner.run("sync-whale-trades")
    cursor = await job_runner.db.fetchone("SELECT newest_created_ms FROM sync_cursors WHERE wallet = ?", (wallet,))
    assert cursor is not None
    assert cursor[0] <= now_ms() + 86_400_000
    simulator.state.advance(5)
    later = simulator.state.add_trade(wallet)
    await job_runner.run("sync-whale-trades")
    assert await count(job_runner, "SELECT count(*) FROM trades WHERE tx_hash = ?", later["txHash"].lower()) == 1


async def test_overlapping_run_is_skipped(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    simulator.faults.add_latency(0.2, path="/market", count=1)
    first, second = await asyncio.gather(
        job_runner.run("sync-markets", trigger="startup"), job_runner.run("sync-markets", trigger="schedule")
    )
    assert first.outcome == "success"
    assert second.outcome == "skipped"
    assert second.trigger == "schedule"
    assert "of this job is still going" in (second.error or "")


async def test_positions_outage_fails_stats_keeps_figures(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    await job_runner.run("sync-whale-trades")
    assert (await job_runner.run("compute-whale-stats")).outcome == "success"
    before = await job_runner.db.fetchall("SELECT wallet, open_positions, open_value FROM wallet_stats ORDER BY wallet")
    simulator.faults.api_error(10403, "restricted jurisdiction", path="/positions/user")
    record = await job_runner.run("compute-whale-stats")
    assert record.outcome == "failure"
    assert "positions unavailable for all 3 wallets" in (record.error or "")
    after = await job_runner.db.fetchall("SELECT wallet, open_positions, open_value FROM wallet_stats ORDER BY wallet")
    assert [tuple(row) for row in after] == [tuple(row) for row in before]


async def test_stored_decimals_have_no_exponent(job_runner: JobRunner, simulator: RunningSimulator) -> None:
    wallet = (await tracked(job_runner))[0]
    simulator.state.add_trade(wallet, profit="0.000000000000000000", fee="0E-18")
    await job_runner.run("sync-whale-trades")
    rows = await job_runner.db.fetchall("SELECT price, shares, amount, fee, profit, notional_usd FROM trades")
    assert rows
    for row in rows:
        for value in row:
            assert "E" not in value.upper(), f"decimal stored with an exponent: {value!r}"

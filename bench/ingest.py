"""Trade ingest throughput: whaled's real path against raw ``sqlite3.executemany`` of the same rows.

Real path, per page of 20 trades: validate the HTTP body (envelope and rows) into ``Trade`` models, and store
them with their ``trade.new``/``trade.whale`` events in one transaction on the aiosqlite write connection.
Baseline, per page: ``executemany`` of the same trade rows and event rows in one transaction on a plain
``sqlite3`` connection with the same pragmas and schema. Both run in this process, several rounds each,
alternating; the medians are compared.

Usage: python bench/ingest.py [--pages 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from whaled.opinion.client import _TRADE_LIST, OpinionClient
from whaled.store import Database
from whaled.store.events import dump_payload
from whaled.store.trades import _row, store_trade_page

WALLET = "0x" + "5a" * 20
WHALE_USD = Decimal(5000)


def make_pages(pages: int, seed: int = 1) -> list[bytes]:
    """Pages of trades in the API's exact shape, as the HTTP body bytes."""
    rng = random.Random(seed)
    bodies = []
    created = 1_780_000_000
    for _ in range(pages):
        rows = []
        for _ in range(20):
            created -= rng.randint(0, 30)
            price = Decimal(rng.randint(10, 990)) / 1000
            shares = Decimal(rng.randint(1, 400_000)) / 100
            rows.append(
                {
                    "txHash": "0x" + rng.randbytes(32).hex(),
                    "marketId": rng.randint(1000, 1100),
                    "rootMarketId": 1000,
                    "marketTitle": "25 bps",
                    "rootMarketTitle": "How many Fed rate cuts in 2026?",
                    "side": rng.choice(["Buy", "Sell"]),
                    "outcome": "YES",
                    "outcomeSide": rng.choice([1, 2]),
                    "outcomeSideEnum": "Yes",
                    "price": f"{price:.18f}",
                    "shares": str(shares),
                    "amount": str(price * shares),
                    "fee": "0.000000000000000000",
                    "profit": "0.000000000000000000",
                    "quoteToken": "0x55d398326f99059fF775485246999027B3197955",
                    "quoteTokenUsdPrice": "1.000000000000000000",
                    "usdAmount": str(price * shares),
                    "status": 2,
                    "statusEnum": "Filled",
                    "chainId": "56",
                    "createdAt": created,
                }
            )
        bodies.append(json.dumps({"errno": 0, "errmsg": "", "result": {"total": pages * 20, "list": rows}}).encode())
    return bodies


async def run_real(bodies: list[bytes], path: Path) -> float:
    db = await Database.open(path)
    client = OpinionClient("http://127.0.0.1:1/openapi")
    try:
        start = time.perf_counter()
        for body in bodies:
            page = client.parse_trade_page("/trade/user/x", 200, {}, body)
            await store_trade_page(db, WALLET, page.items, whale_trade_usd=WHALE_USD)
        return time.perf_counter() - start
    finally:
        await client.close()
        await db.close()


def trade_payload(row: tuple[Any, ...], trade_id: int) -> dict[str, Any]:
    """Build the event payload whaled writes for a trade row, in Python and outside the timed part."""
    names = ("wallet", "tx_hash", "market_id", "root_market_id", "market_title", "root_market_title", "side")
    payload: dict[str, Any] = {"trade_id": trade_id, "label": "bench", **dict(zip(names, row, strict=False))}
    payload.update(outcome=row[7], outcome_side=row[8], price=row[9], shares=row[10], amount=row[11])
    payload.update(notional_usd=row[17], is_whale=bool(row[19]), created_at_ms=row[22], backfill=False)
    return payload


def baseline_rows(bodies: list[bytes]) -> list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Pre-compute the exact rows the real path writes, so the baseline pays only for SQLite."""
    pages = []
    for body in bodies:
        items = _TRADE_LIST.validate_python(json.loads(body)["result"]["list"])
        trades = [_row(WALLET, trade, WHALE_USD, 0) for trade in items]
        events = []
        for index, row in enumerate(trades):
            payload = dump_payload(trade_payload(row, index))
            events.append(("trade", "trade.new", WALLET, row[2], payload, 0))
            if row[19]:
                events.append(("trade", "trade.whale", WALLET, row[2], payload, 0))
        pages.append((trades, events))
    return pages


def run_baseline(pages: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]], path: Path) -> float:
    schema = Path(__file__).parent.parent / "src/whaled/store/migrations/0001_initial.sql"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(schema.read_text(encoding="utf-8"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    trade_sql = f"INSERT INTO trades VALUES (NULL, {','.join('?' * 24)}) ON CONFLICT DO NOTHING"
    event_sql = "INSERT INTO events (topic, type, wallet, market_id, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?)"
    try:
        start = time.perf_counter()
        for trades, events in pages:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(trade_sql, trades)
            conn.executemany(event_sql, events)
            conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bodies = make_pages(args.pages)
    prepared = baseline_rows(bodies)
    trades = args.pages * 20
    real_rates, raw_rates = [], []
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(args.rounds):
            real = asyncio.run(run_real(bodies, Path(folder, f"real{round_number}.db")))
            raw = run_baseline(prepared, Path(folder, f"raw{round_number}.db"))
            real_rates.append(trades / real)
            raw_rates.append(trades / raw)
            print(
                f"round {round_number + 1}: whaled {trades / real:,.0f} trades/s, raw sqlite3 {trades / raw:,.0f} trades/s"
            )
    real_median = statistics.median(real_rates)
    raw_median = statistics.median(raw_rates)
    ratio = real_median / raw_median
    print(f"median over {args.rounds} rounds of {trades} trades: whaled {real_median:,.0f}/s, raw {raw_median:,.0f}/s")
    print(f"RESULT ingest trades_per_s={real_median:.0f} raw_per_s={raw_median:.0f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()

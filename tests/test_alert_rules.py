"""Alert rules against stored rows: filters, first entry, price moves, new and resolved markets, cooldowns."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.fixtures.smtp import append_market_event, append_trade
from whaled.clock import now_ms
from whaled.config import Settings, load_settings
from whaled.errors import ConfigError
from whaled.store import Database, Event
from whaled.workflows.rules import Match, apply_cooldown, evaluate, rules_for_event

WALLET = "0x" + "b" * 40


def settings(**alerts: Any) -> Settings:
    return Settings(alerts=alerts)


async def event(db: Database, event_id: int) -> Event:
    row = await db.fetchone("SELECT * FROM events WHERE id = ?", (event_id,))
    assert row is not None
    return Event.from_row(row)


async def check(db: Database, config: Settings, event_id: int, rule: str) -> Match | None:
    async with db.transaction() as tx:
        return await evaluate(tx, config, await event(db, event_id), rule)


async def hold(db: Database, market_id: int, wallet: str = WALLET, shares: str = "500", label: str = "Orca") -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT OR IGNORE INTO wallets (address, label, source, added_ms) VALUES (?, ?, 'config', 0)",
            (wallet, label),
        )
        await tx.execute(
            "INSERT INTO positions (wallet, market_id, outcome_side, root_market_id, market_title, "
            "root_market_title, outcome, token_id, market_status, shares_owned, shares_frozen, avg_entry_price, "
            "current_value, unrealized_pnl, claim_status, updated_ms) "
            "VALUES (?, ?, 1, ?, 't', 't', 'YES', '1', 2, ?, '0', '0.5', '0', '0', 0, 0)",
            (wallet, market_id, market_id, shares),
        )


@pytest.mark.parametrize(
    ("rule", "payload", "expected"),
    [
        ({"name": "any"}, {}, ["any"]),
        ({"name": "small", "min_notional_usd": "20000"}, {}, []),
        ({"name": "market", "market_ids": [101]}, {}, ["market"]),
        ({"name": "other_market", "market_ids": [7]}, {}, []),
        ({"name": "labelled", "wallet_labels": ["Orca"]}, {"label": "Orca"}, ["labelled"]),
        ({"name": "unlabelled", "wallet_labels": ["Orca"]}, {"label": "Shark"}, []),
    ],
)
async def test_whale_rule_filters(
    db: Database, rule: dict[str, Any], payload: dict[str, Any], expected: list[str]
) -> None:
    event_id = await append_trade(db, 1, notional="10000", label=payload.get("label", ""))
    assert rules_for_event(settings(whale_trades=[rule]), await event(db, event_id), now_ms()) == expected


async def test_whale_rule_default_threshold_follows_whales_setting(db: Database) -> None:
    event_id = await append_trade(db, 1, notional="4999.99")
    found = await event(db, event_id)
    assert rules_for_event(Settings(), found, now_ms()) == []
    assert rules_for_event(Settings(whales={"whale_trade_usd": "4000"}), found, now_ms()) == ["whale_trade"]


async def test_first_entry_only_for_first_trade_in_market(db: Database) -> None:
    config = settings()
    now = now_ms()
    first = await append_trade(db, 1, wallet=WALLET, event_type="trade.new", created_ms=now - 1000, store_trade=True)
    second = await append_trade(db, 2, wallet=WALLET, event_type="trade.new", created_ms=now, store_trade=True)
    sell = await append_trade(db, 3, wallet=WALLET, event_type="trade.new", side="sell", market_id=5)
    assert rules_for_event(config, await event(db, first), now) == ["first_entry"]
    assert rules_for_event(config, await event(db, sell), now) == []
    match = await check(db, config, first, "first_entry")
    assert match is not None
    assert match.dedupe_key == f"first_entry:{WALLET}:101"
    assert await check(db, config, second, "first_entry") is None


async def test_price_move_needs_a_holder_and_the_threshold(db: Database) -> None:
    config = settings(price_move={"min_change_pct": "10", "window_s": 3600})
    big = await append_market_event(
        db, "market.changed", 101, yes_price="0.55", changes={"yes_price": ["0.40", "0.55"]}
    )
    small = await append_market_event(
        db, "market.changed", 102, yes_price="0.45", changes={"yes_price": ["0.40", "0.45"]}
    )
    assert rules_for_event(config, await event(db, big), now_ms()) == ["price_move"]
    assert await check(db, config, big, "price_move") is None  # No tracked wallet has a position in market 101 yet.

    await hold(db, 101)
    await hold(db, 102)
    match = await check(db, config, big, "price_move")
    assert match is not None
    assert match.details["change"] == "+15.00 points (0.40 to 0.55)"
    assert match.details["holders"] == ["Orca (0xbbbb…bbbb)"]
    assert await check(db, config, small, "price_move") is None


async def test_price_move_measures_from_window_start(db: Database) -> None:
    config = settings(price_move={"min_change_pct": "20", "unit": "relative", "window_s": 3600})
    await hold(db, 101)
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO market_snapshots (market_id, taken_ms, volume, yes_price) VALUES (101, ?, '0', '0.40')",
            (now_ms() - 1800 * 1000,),
        )
    event_id = await append_market_event(
        db, "market.changed", 101, yes_price="0.50", changes={"yes_price": ["0.48", "0.50"]}
    )
    match = await check(db, config, event_id, "price_move")
    assert match is not None
    assert match.details["change"].startswith("+25.00 %")


async def test_new_market_rule_is_off_by_default(db: Database) -> None:
    event_id = await append_market_event(db, "market.new", 9)
    assert rules_for_event(Settings(), await event(db, event_id), now_ms()) == []
    config = settings(new_market={"enabled": True})
    assert rules_for_event(config, await event(db, event_id), now_ms()) == ["new_market"]
    match = await check(db, config, event_id, "new_market")
    assert match is not None
    assert match.dedupe_key == "new_market:9"


async def test_resolved_market_lists_tracked_holders(db: Database) -> None:
    config = settings()
    event_id = await append_market_event(db, "market.resolved", 44, winning_outcome="YES")
    assert await check(db, config, event_id, "market_resolved") is None
    await hold(db, 44, shares="1200")
    await hold(db, 44, wallet="0x" + "c" * 40, shares="0", label="Gone")
    match = await check(db, config, event_id, "market_resolved")
    assert match is not None
    assert match.details == {"market_title": "Market 44", "winning_outcome": "YES",
                             "holders": ["Orca (0xbbbb…bbbb) YES 1200 shares"]}  # fmt: skip


async def test_cooldown_suppresses_repeats_and_escalates(db: Database) -> None:
    def trade(amount: str, key: str) -> Match:
        return Match("whale_trade", WALLET, 101, key, 600.0, amount=amount, escalation_factor="2")

    async def apply(match: Match, now: int) -> str | None:
        async with db.transaction() as tx:
            return await apply_cooldown(tx, match, now)

    assert await apply(trade("10000", "k1"), 0) == "new"
    assert await apply(trade("19999", "k2"), 1000) is None
    assert await apply(trade("20000", "k3"), 2000) == "escalation"
    assert await apply(trade("30000", "k4"), 3000) is None
    assert await apply(trade("1000", "k5"), 2000 + 600_000) == "new"
    row = await db.fetchone("SELECT max_amount FROM alert_cooldowns")
    assert row is not None
    assert Decimal(row[0]) == Decimal("1000")


def test_rule_settings_reject_duplicate_names(tmp_path: Any) -> None:
    path = tmp_path / "whaled.toml"
    path.write_text('[[alerts.whale_trades]]\nname = "a"\n[[alerts.whale_trades]]\nname = "a"\n')
    with pytest.raises(ConfigError, match="rule name 'a' is used twice"):
        load_settings(path, environ={})

"""Alert rules: which events may raise an alert, whether one does, and the cooldown per rule, wallet and market.

:func:`rules_for_event` is a cheap filter on the event alone, used by the event consumer to start one alert
workflow per (event, rule). :func:`evaluate` runs inside the workflow's first step, with the database at
hand, and :func:`apply_cooldown` decides in the same transaction whether the alert is new, an escalation,
or a repeat to suppress.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from whaled.config import AlertsSettings, Settings, WhaleTradeRule
from whaled.store import Event, Transaction

__all__ = ["Match", "apply_cooldown", "evaluate", "rules_for_event"]

_ENTRY_SIDES = ("buy", "split")
# Events of the stall alarm (topic "system").
_SYSTEM_EVENTS = ("system.stall", "system.recovered")


@dataclass(frozen=True, slots=True)
class Match:
    """An event that satisfies a rule, before the cooldown. ``wallet`` '' and ``market_id`` 0 mean "any"."""

    rule: str
    wallet: str
    market_id: int
    dedupe_key: str
    cooldown_s: float
    amount: str | None = None
    escalation_factor: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Match:
        return cls(**data)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _whale_rule_applies(rule: WhaleTradeRule, payload: dict[str, Any], default_min: Decimal) -> bool:
    notional = _decimal(payload.get("notional_usd"))
    minimum = rule.min_notional_usd if rule.min_notional_usd is not None else default_min
    if notional is None or notional < minimum:
        return False
    markets = {payload.get("market_id"), payload.get("root_market_id")}
    if rule.market_ids and not markets & set(rule.market_ids):
        return False
    return not rule.wallet_labels or payload.get("label") in rule.wallet_labels


def _recent_trade(alerts: AlertsSettings, payload: dict[str, Any], now: int) -> bool:
    created = payload.get("created_at_ms")
    return isinstance(created, int) and created >= now - alerts.max_trade_age_s * 1000


def rules_for_event(settings: Settings, event: Event, now: int) -> list[str]:
    """Name the rules that may raise an alert for ``event``, judging from the event alone."""
    alerts, payload = settings.alerts, event.payload
    if event.type == "trade.whale" and _recent_trade(alerts, payload, now):
        default_min = settings.whales.whale_trade_usd
        return [rule.name for rule in alerts.whale_trades if _whale_rule_applies(rule, payload, default_min)]
    if event.type == "trade.new" and alerts.first_entry.enabled and _recent_trade(alerts, payload, now):
        return ["first_entry"] if payload.get("side") in _ENTRY_SIDES else []
    if event.type == "market.changed" and alerts.price_move.enabled:
        return ["price_move"] if "yes_price" in (payload.get("changes") or {}) else []
    if event.type == "market.new" and alerts.new_market.enabled:
        return ["new_market"]
    if event.type == "market.resolved" and alerts.market_resolved.enabled:
        return ["market_resolved"]
    if event.type in _SYSTEM_EVENTS and alerts.system_health.enabled:
        return ["system_health"]
    return []


async def evaluate(tx: Transaction, settings: Settings, event: Event, rule: str) -> Match | None:
    """Check the rule against the event and the stored rows; return the match or None."""
    if event.type == "trade.whale":
        return _whale_match(settings, event, rule)
    if rule == "first_entry":
        return await _first_entry(tx, settings.alerts, event)
    if rule == "price_move":
        return await _price_move(tx, settings.alerts, event)
    if rule == "new_market":
        return _market_match(event, "new_market", settings.alerts.new_market.cooldown_s, {})
    if rule == "market_resolved":
        return await _market_resolved(tx, settings.alerts, event)
    if rule == "system_health":
        return _system_health(event)
    return None


def _system_health(event: Event) -> Match:
    """Match every stall or recovery: the alarm already sends one event per change, so no cooldown applies."""
    payload = event.payload
    return Match(
        rule="system_health",
        wallet="",
        market_id=0,
        dedupe_key=f"system:{event.id}",
        cooldown_s=0.0,
        details={
            "state": "recovered" if event.type == "system.recovered" else "stalled",
            "reasons": list(payload.get("reasons") or []),
            "active": list(payload.get("active") or []),
        },
    )


def _trade_details(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "wallet": payload.get("wallet"),
        "wallet_name": _wallet_name(payload.get("wallet"), payload.get("label")),
        "market_title": payload.get("market_title") or payload.get("root_market_title"),
        "side": payload.get("side"),
        "outcome": payload.get("outcome"),
        "trade_price": payload.get("price"),
        "shares": payload.get("shares"),
        "notional_usd": payload.get("notional_usd"),
        "tx_hash": payload.get("tx_hash"),
    }


def _wallet_name(wallet: Any, label: Any) -> str:
    short = f"{str(wallet)[:6]}…{str(wallet)[-4:]}" if wallet else "?"
    return f"{label} ({short})" if label else short


def _whale_match(settings: Settings, event: Event, rule_name: str) -> Match | None:
    rule = next((rule for rule in settings.alerts.whale_trades if rule.name == rule_name), None)
    payload = event.payload
    if rule is None or not _whale_rule_applies(rule, payload, settings.whales.whale_trade_usd):
        return None
    return Match(
        rule=rule.name,
        wallet=str(payload.get("wallet") or ""),
        market_id=int(payload.get("market_id") or 0),
        dedupe_key=f"{rule.name}:trade:{payload.get('trade_id')}",
        cooldown_s=rule.cooldown_s,
        amount=str(payload.get("notional_usd")),
        escalation_factor=str(rule.escalation_factor),
        details=_trade_details(payload),
    )


async def _first_entry(tx: Transaction, alerts: AlertsSettings, event: Event) -> Match | None:
    payload = event.payload
    wallet, market_id = payload.get("wallet"), payload.get("market_id")
    earlier = await tx.fetchone(
        "SELECT 1 FROM trades WHERE wallet = ? AND market_id = ? AND id != ? "
        "AND (created_at_ms < ? OR (created_at_ms = ? AND id < ?)) LIMIT 1",
        (wallet, market_id, payload.get("trade_id"), payload.get("created_at_ms"),
         payload.get("created_at_ms"), payload.get("trade_id")),
    )  # fmt: skip
    if earlier is not None:
        return None
    return Match(
        rule="first_entry",
        wallet=str(wallet or ""),
        market_id=int(market_id or 0),
        dedupe_key=f"first_entry:{wallet}:{market_id}",
        cooldown_s=alerts.first_entry.cooldown_s,
        details=_trade_details(payload),
    )


async def _holders(tx: Transaction, market_id: int) -> list[dict[str, Any]]:
    """List the tracked wallets with a non-empty position in the market."""
    rows = await tx.fetchall(
        "SELECT p.wallet, w.label, p.outcome, p.shares_owned FROM positions p "
        "JOIN wallets w ON w.address = p.wallet WHERE p.market_id = ? AND w.tracked = 1 ORDER BY p.wallet",
        (market_id,),
    )
    holders = []
    for row in rows:
        shares = _decimal(row["shares_owned"])
        if shares is not None and shares > 0:
            name = _wallet_name(row["wallet"], row["label"])
            holders.append({"wallet": row["wallet"], "name": name, "outcome": row["outcome"], "shares": str(shares)})
    return holders


def _market_match(event: Event, rule: str, cooldown_s: float, details: dict[str, Any]) -> Match:
    payload = event.payload
    market_id = int(payload.get("market_id") or event.market_id or 0)
    key = f"{rule}:{market_id}" if rule != "price_move" else f"{rule}:{market_id}:{event.id}"
    return Match(
        rule=rule,
        wallet="",
        market_id=market_id,
        dedupe_key=key,
        cooldown_s=cooldown_s,
        details={"market_title": payload.get("title") or payload.get("root_title"), **details},
    )


async def _price_move(tx: Transaction, alerts: AlertsSettings, event: Event) -> Match | None:
    rule = alerts.price_move
    payload = event.payload
    old, new = (payload.get("changes") or {}).get("yes_price", [None, None])
    market_id = int(payload.get("market_id") or 0)
    row = await tx.fetchone(
        "SELECT yes_price FROM market_snapshots WHERE market_id = ? AND taken_ms >= ? AND yes_price IS NOT NULL "
        "ORDER BY taken_ms LIMIT 1",
        (market_id, event.created_ms - int(rule.window_s * 1000)),
    )
    reference = _decimal(row["yes_price"] if row is not None else old)
    current = _decimal(payload.get("yes_price", new))
    if reference is None or current is None or (rule.unit == "relative" and reference == 0):
        return None
    change = (current - reference) * 100
    if rule.unit == "relative":
        change = change / reference
    if abs(change) < rule.min_change_pct:
        return None
    holders = await _holders(tx, market_id)
    if not holders:
        return None
    unit = "points" if rule.unit == "points" else "%"
    details = {"change": f"{change:+.2f} {unit} ({reference} to {current})", "holders": [h["name"] for h in holders]}
    return _market_match(event, "price_move", rule.cooldown_s, details)


async def _market_resolved(tx: Transaction, alerts: AlertsSettings, event: Event) -> Match | None:
    holders = await _holders(tx, int(event.payload.get("market_id") or 0))
    if not holders:
        return None
    winner = event.payload.get("winning_outcome")
    names = [f"{h['name']} {h['outcome']} {h['shares']} shares" for h in holders]
    details = {"winning_outcome": winner, "holders": names}
    return _market_match(event, "market_resolved", alerts.market_resolved.cooldown_s, details)


async def apply_cooldown(tx: Transaction, match: Match, now: int) -> Literal["new", "escalation"] | None:
    """Decide and record, in the caller's transaction, whether ``match`` raises an alert.

    Inside the cooldown of the same (rule, wallet, market), a match is suppressed unless its amount is at
    least ``escalation_factor`` times the largest amount alerted in that cooldown: then it escalates.
    """
    if await tx.fetchone("SELECT 1 FROM alerts WHERE dedupe_key = ?", (match.dedupe_key,)) is not None:
        return None
    row = await tx.fetchone(
        "SELECT last_alert_ms, max_amount FROM alert_cooldowns WHERE rule = ? AND wallet = ? AND market_id = ?",
        (match.rule, match.wallet, match.market_id),
    )
    kind: Literal["new", "escalation"] = "new"
    if row is not None and now - row["last_alert_ms"] < match.cooldown_s * 1000:
        if not _escalates(match, _decimal(row["max_amount"])):
            return None
        kind = "escalation"
    await tx.execute(
        "INSERT INTO alert_cooldowns (rule, wallet, market_id, last_alert_ms, max_amount) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (rule, wallet, market_id) DO UPDATE SET last_alert_ms = excluded.last_alert_ms, "
        "max_amount = excluded.max_amount",
        (match.rule, match.wallet, match.market_id, now, match.amount),
    )
    return kind


def _escalates(match: Match, largest: Decimal | None) -> bool:
    amount, factor = _decimal(match.amount), _decimal(match.escalation_factor)
    if amount is None or factor is None or largest is None:
        return False
    return amount >= largest * factor

"""The alert workflow: evaluate and dedupe, enrich, record the alert with its outbox rows, deliver.

The input is ``{"event_id": int, "rule": str}``. "evaluate" and "record" are transactional steps, so the
cooldown claim and the alert, its ``alert`` event and its deliveries each commit together with their journal
row. "enrich" reads Opinion at interactive priority and falls back to the stored market when Opinion fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from whaled.config import Settings
from whaled.governor import GovernedOpinion, Priority
from whaled.log import alerts_logger as logger
from whaled.notify import OutboxSender, add_deliveries
from whaled.notify.text import replace_control_characters
from whaled.opinion import OpinionConnectionError, OpinionError, OpinionTimeoutError
from whaled.store import Event
from whaled.store.events import dump_payload
from whaled.workflows.definition import RetryPolicy, Step, StepContext, WorkflowDefinition
from whaled.workflows.rules import Match, apply_cooldown, evaluate

__all__ = ["ALERT_VERSION", "ALERT_WORKFLOW", "AlertSteps", "alert_title"]

ALERT_WORKFLOW = "alert"
ALERT_VERSION = 1

_ENRICH_RETRY = RetryPolicy(
    retry_on=(OpinionTimeoutError, OpinionConnectionError), max_tries=3, base_s=0.5, max_delay_s=5.0
)


def alert_title(match: Match, kind: str, market_title: str | None) -> str:
    """Build the one-line summary used as the email subject and the event's ``title``.

    Control characters from the data (a wallet label, a market title) become spaces, so the title stays on
    one line in the Subject header, in log lines and on the dashboard.
    """
    return replace_control_characters(_title(match, kind, market_title))


def _title(match: Match, kind: str, market_title: str | None) -> str:
    details = match.details
    market = market_title or details.get("market_title") or f"market {match.market_id}"
    prefix = "Escalation: " if kind == "escalation" else ""
    if match.rule == "first_entry":
        return f"{details.get('wallet_name')} entered {market}"
    if match.rule == "price_move":
        return f"{market} moved {details.get('change')}"
    if match.rule == "new_market":
        return f"New market: {market}"
    if match.rule == "market_resolved":
        return f"Resolved: {market} ({details.get('winning_outcome') or 'no winner given'})"
    if match.rule == "system_health":
        reasons = details.get("reasons") or ["no reason given"]
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return f"whaled {details.get('state', 'stalled')}: {reasons[0]}{more}"
    side = details.get("side") or "traded"
    outcome = f" {details['outcome']}" if details.get("outcome") else ""
    return f"{prefix}{details.get('wallet_name')} {side}{outcome} for {details.get('notional_usd')} USD on {market}"


@dataclass(slots=True)
class AlertSteps:
    """The step functions, bound to what they need.

    :param sender: woken by "deliver", which then waits up to ``deliver_wait_s`` for the first attempt.
    """

    settings: Settings
    opinion: GovernedOpinion | None
    sender: OutboxSender | None
    clock: Callable[[], int]
    deliver_wait_s: float = 30.0

    def definition(self) -> WorkflowDefinition:
        return WorkflowDefinition(
            ALERT_WORKFLOW,
            ALERT_VERSION,
            (
                Step("evaluate", self.evaluate, transactional=True, timeout_s=10.0),
                Step("enrich", self.enrich, retry=_ENRICH_RETRY, timeout_s=30.0, fallback=self.enrich_locally),
                Step("record", self.record, transactional=True, timeout_s=10.0),
                Step("deliver", self.deliver, timeout_s=self.deliver_wait_s + 5.0),
            ),
        )

    async def evaluate(self, ctx: StepContext) -> dict[str, Any]:
        tx = ctx.transaction
        row = await tx.fetchone("SELECT * FROM events WHERE id = ?", (ctx.input["event_id"],))
        if row is None:
            return {"alert": False, "reason": "event not found (pruned?)"}
        match = await evaluate(tx, self.settings, Event.from_row(row), ctx.input["rule"])
        if match is None:
            return {"alert": False, "reason": "rule not met"}
        kind = await apply_cooldown(tx, match, self.clock())
        if kind is None:
            logger.debug("Alert %s suppressed by its cooldown or as a duplicate", match.dedupe_key)
            return {"alert": False, "reason": "cooldown or duplicate"}
        return {"alert": True, "kind": kind, "match": match.to_json()}

    async def enrich(self, ctx: StepContext) -> dict[str, Any]:
        local = await self.enrich_locally(ctx, None)
        if not ctx.results["evaluate"]["alert"] or self.opinion is None:
            return local
        market_id = int(ctx.results["evaluate"]["match"]["market_id"])
        if not market_id:
            return local  # an alert about whaled itself, with no market to look up
        opinion = self.opinion.with_priority(Priority.interactive)
        try:
            if not local["market_title"] or not local["token_id"]:
                market = await opinion.get_market(market_id)
                local["market_title"] = local["market_title"] or market.market_title
                local["token_id"] = local["token_id"] or market.yes_token_id
            if local["token_id"]:
                latest = await opinion.latest_price(local["token_id"])
                local.update(current_price=str(latest.price), price_source="opinion")
        except (OpinionTimeoutError, OpinionConnectionError):
            raise
        except OpinionError as exc:
            logger.warning("Alert enrichment for market %d used stored data: %s", market_id, exc)
        return local

    async def enrich_locally(self, ctx: StepContext, error: Exception | None) -> dict[str, Any]:
        """Read the market's title, yes token and last stored price; the fallback when Opinion fails."""
        found: dict[str, Any] = {"market_title": None, "token_id": None, "current_price": None, "price_source": None}
        if not ctx.results["evaluate"]["alert"]:
            return found
        market_id = int(ctx.results["evaluate"]["match"]["market_id"])
        if not market_id:
            return found
        row = await ctx.db.fetchone(
            "SELECT title, yes_token_id, yes_price FROM markets WHERE market_id = ?", (market_id,)
        )
        if row is not None:
            found.update(market_title=row["title"], token_id=row["yes_token_id"], current_price=row["yes_price"])
            found["price_source"] = "stored" if row["yes_price"] is not None else None
        if error is not None:
            logger.warning("Alert enrichment for market %d used stored data after %r", market_id, error)
        return found

    async def record(self, ctx: StepContext) -> dict[str, Any]:
        evaluated = ctx.results["evaluate"]
        if not evaluated["alert"]:
            return {"alert_id": None}
        match = Match.from_json(evaluated["match"])
        enriched = ctx.results["enrich"]
        kind = evaluated["kind"]
        title = alert_title(match, kind, enriched.get("market_title"))
        now = self.clock()

        payload = {
            **match.details,
            "market_id": match.market_id or None,
            "market_title": enriched.get("market_title") or match.details.get("market_title"),
            "current_price": enriched.get("current_price"),
            "source_event_id": ctx.input["event_id"],
            "workflow_id": ctx.workflow_id,
        }
        tx = ctx.transaction
        cursor = await tx.execute(
            "INSERT INTO alerts (workflow_id, rule, kind, dedupe_key, wallet, market_id, source_event_id, title, "
            "payload, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
            (ctx.workflow_id, match.rule, kind, match.dedupe_key, match.wallet or None, match.market_id or None,
             ctx.input["event_id"], title, dump_payload(payload), now),
        )  # fmt: skip
        if cursor.rowcount != 1 or cursor.lastrowid is None:
            return {"alert_id": None, "reason": "duplicate"}

        alert_id = cursor.lastrowid
        event = {"alert_id": alert_id, "rule": match.rule, "kind": kind, "title": title, **payload}
        event_id = await tx.append_event(
            "alert", "alert", event, wallet=match.wallet or None, market_id=match.market_id or None
        )
        await tx.execute("UPDATE alerts SET event_id = ? WHERE id = ?", (event_id, alert_id))

        alerts = self.settings.alerts
        deliveries = await add_deliveries(tx, alert_id, alerts.recipients, alerts.webhook_urls, now)
        logger.info("Alert %d (%s, %s) recorded: %s; %d deliveries queued", alert_id, match.rule, kind, title,
                    deliveries)  # fmt: skip
        return {"alert_id": alert_id, "event_id": event_id, "deliveries": deliveries}

    async def deliver(self, ctx: StepContext) -> dict[str, Any]:
        recorded = ctx.results["record"]
        if not recorded.get("alert_id") or not recorded.get("deliveries") or self.sender is None:
            return {"statuses": {}}
        statuses = await self.sender.await_attempt(int(recorded["alert_id"]), self.deliver_wait_s)
        return {"statuses": statuses}

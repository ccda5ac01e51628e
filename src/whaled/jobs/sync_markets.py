"""``sync-markets``: all activated markets plus recently resolved ones, a snapshot, and market events.

Each page is stored in one transaction together with its events. The yes-token price comes from
``/token/latest-price``, at most ``whales.price_lookups_max`` lookups per run, largest volume first.
"""

from __future__ import annotations

from decimal import Decimal

from whaled.clock import now_ms
from whaled.governor.opinion import REQUEST_ERRORS
from whaled.jobs.base import JobContext, JobResult
from whaled.log import jobs_logger as logger
from whaled.opinion.models import Market, canonical
from whaled.opinion.pagination import paginate
from whaled.store.markets import (
    MarketRow,
    add_snapshot,
    classify_change,
    flatten_market,
    load_markets,
    market_payload,
    upsert_market,
)

__all__ = ["sync_markets"]

# sortBy=1 lists the newest markets first. The resolved list has no "recently resolved" order, so a market
# that left the activated list is also looked up by id (see _Run.refresh_departed).
_SORT_NEW = 1
# Most markets looked up by id per run because they left the activated list; the rest wait for the next run.
_DEPARTED_LOOKUPS_MAX = 100
# Statuses of a market that is not finished yet: created, activated, resolving.
_OPEN_STATUSES = (1, 2, 3)


class _Run:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.whales = ctx.settings.whales
        self.started = now_ms()
        self.price_budget = self.whales.price_lookups_max
        self.price_failures = 0
        self.counts = {"markets": 0, "new": 0, "changed": 0, "resolved": 0, "snapshots": 0, "departed": 0}
        self.initial = False
        self.seen_roots: set[int] = set()

    async def fetch_prices(self, rows: list[MarketRow]) -> dict[int, str]:
        """Look up the yes-token price of each open tradable market on the page, within the run's budget."""
        tradable = [row for row in rows if row.yes_token_id and row.status == 2]
        tradable.sort(key=lambda row: Decimal(row.volume), reverse=True)
        prices: dict[int, str] = {}
        for row in tradable:
            if self.price_budget <= 0:
                break
            self.price_budget -= 1
            assert row.yes_token_id is not None
            try:
                latest = await self.ctx.api.latest_price(row.yes_token_id)
            except REQUEST_ERRORS as exc:
                self.price_failures += 1
                logger.debug("Price of market %d unavailable: %s", row.market_id, exc)
                continue
            prices[row.market_id] = canonical(latest.price)
        return prices

    async def store_page(self, markets: list[Market]) -> None:
        self.seen_roots.update(market.market_id for market in markets)
        rows = [row for market in markets for row in flatten_market(market)]
        prices = await self.fetch_prices(rows)
        async with self.ctx.db.transaction() as tx:
            before = await load_markets(tx, [row.market_id for row in rows])
            for row in rows:
                yes_price = prices.get(row.market_id)
                change = classify_change(
                    before.get(row.market_id),
                    row,
                    yes_price,
                    price_change=self.whales.market_price_change,
                    volume_change_pct=self.whales.market_volume_change_pct,
                )
                await upsert_market(tx, row, yes_price, self.started)
                stored_price = yes_price or (before[row.market_id]["yes_price"] if row.market_id in before else None)
                if await add_snapshot(tx, row, stored_price, self.started):
                    self.counts["snapshots"] += 1
                self.counts["markets"] += 1
                if change.kind == "same":
                    continue
                self.counts[change.kind] += 1
                payload = market_payload(row, stored_price)
                if change.kind == "new":
                    payload["initial"] = self.initial
                if change.changes:
                    payload["changes"] = {name: list(pair) for name, pair in change.changes.items()}
                if change.kind == "resolved":
                    payload["winning_outcome"] = row.winning_outcome
                    payload["result_token_id"] = row.result_token_id
                await tx.append_event("market", f"market.{change.kind}", payload, market_id=row.market_id)

    async def walk(self, status: str, max_pages: int, sort_by: int | None = None) -> None:
        api = self.ctx.api
        async for _, page in paginate(
            lambda number: api.list_markets(number, status=status, sort_by=sort_by),
            limit=api.page_limit,
            max_pages=max_pages,
            what=f"{status} markets",
        ):
            await self.store_page(page.items)

    async def refresh_departed(self) -> None:
        """Look up by id the stored open markets that left the activated list: they resolved or closed.

        Without this, a market resolving long after its creation would never reach the first pages of the
        resolved list, and its resolution would go unrecorded.
        """
        rows = await self.ctx.db.fetchall(
            "SELECT market_id, market_type FROM markets WHERE is_root = 1 AND status IN "
            f"({', '.join('?' * len(_OPEN_STATUSES))}) ORDER BY updated_ms LIMIT ?",
            (*_OPEN_STATUSES, _DEPARTED_LOOKUPS_MAX + len(self.seen_roots)),
        )
        departed = [row for row in rows if row["market_id"] not in self.seen_roots][:_DEPARTED_LOOKUPS_MAX]
        for row in departed:
            api = self.ctx.api
            lookup = api.get_categorical_market if row["market_type"] == 1 else api.get_market
            try:
                market = await lookup(row["market_id"])
            except REQUEST_ERRORS as exc:
                logger.warning("Market %d left the activated list but cannot be read: %s", row["market_id"], exc)
                continue
            self.counts["departed"] += 1
            await self.store_page([market])


async def sync_markets(ctx: JobContext) -> JobResult:
    run = _Run(ctx)
    row = await ctx.db.fetchone("SELECT count(*) FROM markets")
    run.initial = row is not None and row[0] == 0
    await run.walk("activated", ctx.settings.opinion.max_pages)
    if ctx.settings.whales.resolved_lookback_pages:
        await run.walk("resolved", ctx.settings.whales.resolved_lookback_pages, sort_by=_SORT_NEW)
    await run.refresh_departed()
    details: dict[str, object] = dict(run.counts)
    details["price_failures"] = run.price_failures
    logger.info(
        "Markets synced: %d seen, %d new, %d changed, %d resolved",
        run.counts["markets"],
        run.counts["new"],
        run.counts["changed"],
        run.counts["resolved"],
    )
    return JobResult(items=run.counts["markets"], details=details)

"""``sync-whale-trades``: each tracked wallet's new trades, newest first, down to its stored cursor.

Every page is stored in one transaction with its events; a trade already stored is skipped. The cursor moves
only after a walk reached the cursor or the end of the history, so a run that fails or is killed part way
re-reads those pages next time instead of skipping them. A first sync reads at most
``opinion.max_pages`` pages; anything older is recorded as a gap, which the dashboard shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from whaled.clock import now_ms
from whaled.governor.opinion import REQUEST_ERRORS
from whaled.jobs.base import JobContext, JobResult
from whaled.jobs.discovery import refresh_discovered_wallets
from whaled.log import jobs_logger as logger
from whaled.opinion.errors import OpinionError
from whaled.opinion.models import Page, Trade
from whaled.opinion.pagination import paginate
from whaled.store.trades import load_cursor, record_gap, record_sync_error, save_cursor, store_trade_page
from whaled.store.wallets import TrackedWallet, tracked_wallets

__all__ = ["TradeSyncError", "sync_wallet_trades", "sync_whale_trades"]

# Wallets synced at once. The governor paces the requests; this only bounds the pages held in memory.
_CONCURRENT_WALLETS = 4
# Trades dated up to this far ahead of the local clock are accepted (clock skew between hosts).
_FUTURE_TOLERANCE_MS = 86_400_000


@dataclass(slots=True)
class WalletSync:
    """The outcome of one wallet's walk."""

    new_trades: int = 0
    pages: int = 0
    complete: bool = False
    rejected: int = 0
    error: str | None = None


def _usable_trades(wallet: TrackedWallet, page: Page[Trade], result: WalletSync) -> list[Trade]:
    """Drop and log the rows that cannot be stored: rows that did not validate, and rows dated in the future.

    A row dated more than a day ahead would move the cursor past every real trade to come, so it is rejected.
    """
    for problem in page.rejected:
        logger.warning("Trade row of wallet %s rejected: %s", wallet.address, problem)
    horizon = now_ms() + _FUTURE_TOLERANCE_MS
    usable = [trade for trade in page.items if trade.created_at <= horizon]
    for trade in page.items:
        if trade.created_at > horizon:
            logger.warning(
                "Trade %s of wallet %s rejected: createdAt %d ms is in the future", trade.tx_hash, wallet.address,
                trade.created_at,
            )  # fmt: skip
    result.rejected += len(page.rejected) + len(page.items) - len(usable)
    return usable


async def sync_wallet_trades(ctx: JobContext, wallet: TrackedWallet) -> WalletSync:
    """Walk one wallet's trades from the newest down to its cursor; store each page as it arrives."""
    cursor = await load_cursor(ctx.db, wallet.address)
    backfill = cursor.newest_created_ms is None
    whale_usd = ctx.settings.whales.whale_trade_usd
    result = WalletSync()
    newest: int | None = None
    oldest_seen: int | None = None
    max_pages = ctx.settings.opinion.max_pages
    limit = ctx.api.page_limit

    async for _, page in paginate(
        lambda number: ctx.api.user_trades(wallet.address, number),
        limit=limit,
        max_pages=max_pages,
        what=f"trades of {wallet.address}",
    ):
        result.pages += 1
        trades = _usable_trades(wallet, page, result)
        if trades:
            page_newest = max(trade.created_at for trade in trades)
            newest = page_newest if newest is None else max(newest, page_newest)
            page_oldest = min(trade.created_at for trade in trades)
            oldest_seen = page_oldest if oldest_seen is None else min(oldest_seen, page_oldest)
        # Trades at the cursor's own time are read again: several trades can share one second.
        # NOTE: a trade that appears later with a createdAt older than the cursor (a late-confirmed fill, if
        # Opinion ever lists those) is not stored, because the public API gives no other way to find such rows.
        fresh = [t for t in trades if backfill or t.created_at >= (cursor.newest_created_ms or 0)]
        ids = await store_trade_page(ctx.db, wallet.address, fresh, whale_trade_usd=whale_usd, backfill=backfill)
        result.new_trades += len(ids)
        if len(fresh) < len(trades) or page.row_count < limit:
            result.complete = True
            break
        if page.total is not None and result.pages * limit >= page.total:
            result.complete = True
            break

    async with ctx.db.transaction() as tx:
        if not result.complete and oldest_seen is not None:
            await record_gap(
                tx,
                wallet.address,
                older_than_ms=oldest_seen,
                newer_than_ms=cursor.newest_created_ms,
                reason=f"page limit of {max_pages} pages reached",
            )
            logger.warning(
                "Trades of %s older than %d ms not imported: the page limit of %d was reached",
                wallet.address,
                oldest_seen,
                max_pages,
            )
        await save_cursor(tx, wallet.address, newest)
    return result


async def _sync_one(ctx: JobContext, wallet: TrackedWallet, slots: asyncio.Semaphore) -> WalletSync:
    async with slots:
        try:
            return await sync_wallet_trades(ctx, wallet)
        except REQUEST_ERRORS as exc:
            logger.warning("Trade sync of wallet %s failed: %s", wallet.address, exc)
            async with ctx.db.transaction() as tx:
                await record_sync_error(tx, wallet.address, str(exc))
            return WalletSync(error=str(exc))


async def sync_whale_trades(ctx: JobContext) -> JobResult:
    details: dict[str, object] = {}
    if ctx.settings.discovery.enabled:
        details["discovery"] = await refresh_discovered_wallets(ctx)
    wallets = await tracked_wallets(ctx.db)
    slots = asyncio.Semaphore(_CONCURRENT_WALLETS)
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_sync_one(ctx, wallet, slots), name=f"sync-trades-{wallet.address}") for wallet in wallets
        ]
    results = [task.result() for task in tasks]
    failed = {wallet.address: r.error for wallet, r in zip(wallets, results, strict=True) if r.error}
    new_trades = sum(r.new_trades for r in results)
    rejected = sum(r.rejected for r in results)
    details.update(wallets=len(wallets), failed_wallets=failed, new_trades=new_trades, rejected_rows=rejected)
    logger.info("Trades synced: %d new across %d wallets, %d failed", new_trades, len(wallets), len(failed))
    if failed and len(failed) == len(wallets):
        raise TradeSyncError(failed)
    return JobResult(items=new_trades, details=details)


class TradeSyncError(OpinionError):
    """The trade sync failed for every tracked wallet."""

    def __init__(self, failed: Mapping[str, str | None]) -> None:
        first = next(iter(failed.values()))
        super().__init__("/trade/user", f"all {len(failed)} wallets failed; first error: {first}")

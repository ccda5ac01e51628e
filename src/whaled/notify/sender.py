"""The outbox sender: one owned loop that sends due deliveries and settles each row's status.

Each attempt claims its rows (``sending``) in one transaction, sends, then records the outcome in another.
For email the moment before DATA is recorded too, so a crash in between is settled at the next start:
rows that had reached DATA become ``unknown``, the others are sent again.

Nothing here retries without a delay. Rows whose email cannot be built are marked ``failed`` at once,
because the same rows would raise again at every pass. An unexpected error in a send is retried after the
usual retry delay. A pass that raises is followed by a pause that doubles with each failed pass in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from whaled.clock import now_ms
from whaled.config import AlertsSettings, SmtpSettings
from whaled.log import mail_logger as logger
from whaled.notify import outbox
from whaled.notify.email import EmailTransport
from whaled.notify.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError, UnknownOutcomeError
from whaled.notify.message import render_email
from whaled.notify.outbox import AlertView, Delivery, SentMessage
from whaled.notify.pacing import PacingDecision, PacingPolicy
from whaled.notify.webhook import WebhookTransport, webhook_payload
from whaled.store import Database

__all__ = ["OutboxSender"]

_SETTLE_GRACE_S = 5.0
# The maximum pause after a pass that raised. Pauses double from poll_interval_s up to this.
_MAX_PASS_BACKOFF_S = 300.0


class OutboxSender:
    """Sends what the outbox holds, paced per recipient, with persistent retries.

    :param email: the SMTP transport; defaults to one built from ``smtp``.
    :param webhook: the webhook transport; defaults to one built from ``alerts``.
    """

    def __init__(
        self,
        db: Database,
        smtp: SmtpSettings,
        alerts: AlertsSettings,
        *,
        clock: Callable[[], int] = now_ms,
        email: EmailTransport | None = None,
        webhook: WebhookTransport | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._sender = smtp.sender
        self._email = email or EmailTransport(smtp)
        self._webhook = webhook or WebhookTransport(alerts.webhook_secret, timeout_s=alerts.webhook_timeout_s)
        self._policy = PacingPolicy.from_settings(alerts)
        self._retry_base_ms = alerts.retry_base_s * 1000
        self._retry_max_ms = alerts.retry_max_s * 1000
        self._max_attempts = alerts.max_attempts
        self._poll_interval_s = alerts.poll_interval_s
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pass_done = asyncio.Event()
        self._passes_started = 0
        self._passes_done = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.counters: Counter[str] = Counter()

    # Lifecycle

    async def start(self) -> None:
        """Settle rows that a crash left ``sending``, then start the loop."""
        async with self._db.transaction() as tx:
            requeued, unknown = await outbox.recover_interrupted(tx, self._clock())
        if requeued or unknown:
            logger.warning("Outbox: %d interrupted deliveries requeued, %d marked unknown", requeued, unknown)
        self._task = asyncio.create_task(self._run_forever(), name="whaled.notify.outbox")

    def wake(self) -> None:
        self._wake.set()

    async def close(self, grace_s: float = 10.0) -> None:
        """Finish the pass in progress (within ``grace_s``), stop the loop and close the transports."""
        self._closing = True
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace_s)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._webhook.close()
        logger.info("Outbox sender stopped: %s", dict(self.counters))

    async def _run_forever(self) -> None:
        failures = 0
        while not self._closing:
            try:
                await self.run_once()
                failures = 0
                await self._sleep_until_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The cause (a broken database, a bug) is likely still there, so pause whatever is due.
                failures += 1
                delay = self._pass_backoff_s(failures)
                logger.exception("Outbox pass failed (%d in a row); next pass in %.2f s", failures, delay)
                await self._pause(delay)

    def _pass_backoff_s(self, failures: int) -> float:
        ceiling = max(self._poll_interval_s, _MAX_PASS_BACKOFF_S)
        return float(min(self._poll_interval_s * 2 ** min(failures - 1, 30), ceiling))

    async def _pause(self, delay_s: float) -> None:
        """Wait ``delay_s`` seconds or until :meth:`close`. Unlike the poll sleep, :meth:`wake` does not end it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()

    async def _sleep_until_due(self) -> None:
        due = await outbox.next_due_ms(self._db)
        delay = self._poll_interval_s
        if due is not None:
            delay = min(max((due - self._clock()) / 1000, 0.0), delay)
        if delay > 0 and not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
        self._wake.clear()

    async def await_attempt(self, alert_id: int, timeout_s: float) -> dict[str, int]:
        """Wake the loop, wait (bounded) for a pass that starts after now, and count the alert's rows by status."""
        target = self._passes_started + 1
        self.wake()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._passes_done < target:
                    await self._pass_done.wait()
        return dict(Counter(row.status for row in await outbox.deliveries_for_alert(self._db, alert_id)))

    # One pass

    async def run_once(self) -> int:
        """Send every due delivery once; return how many messages were attempted."""
        async with self._lock:
            self._passes_started += 1
            try:
                return await self._send_due()
            finally:
                self._passes_done += 1
                self._pass_done.set()
                self._pass_done = asyncio.Event()

    async def _send_due(self) -> int:
        due = await outbox.due_deliveries(self._db, self._clock())
        by_recipient: dict[str, list[Delivery]] = defaultdict(list)
        attempted = 0
        for row in due:
            if row.channel == "webhook":
                attempted += await self._post(row)
            else:
                by_recipient[row.target].append(row)
        for recipient, rows in by_recipient.items():
            attempted += await self._send_to(recipient, rows)
        return attempted

    async def _send_to(self, recipient: str, rows: list[Delivery]) -> int:
        since = self._clock() - self._policy.history_ms
        history = await outbox.sent_history(self._db, "email", recipient, since)
        attempted = 0
        while rows and not self._closing:
            decision = self._policy.decide(rows, history, self._clock())
            if decision.action == "defer":
                await self._defer(decision.rows, decision.until_ms, decision.reason)
                break
            built = await self._build(recipient, decision.rows)
            if isinstance(built, set):
                # Those rows are now failed for good, so pacing decides again for the others.
                rows = [row for row in rows if row.id not in built]
                continue
            attempted += 1
            sent = await self._send_email(recipient, decision, *built)
            if sent is None:
                # The server failed or rejected: the remaining rows wait for the retry time of this one.
                await self._defer_after_failure(recipient, rows, decision)
                break
            history.append(sent)
            taken = {row.id for row in decision.rows}
            rows = [row for row in rows if row.id not in taken]
        return attempted

    async def _defer(self, rows: Sequence[Delivery], until_ms: int, reason: str) -> None:
        async with self._db.transaction() as tx:
            await outbox.defer(tx, [row.id for row in rows], until_ms, reason, self._clock())
        self.counters["deferred"] += len(rows)
        logger.debug("Outbox: %d deliveries to %s %s", len(rows), rows[0].target, reason)

    async def _defer_after_failure(self, recipient: str, rows: list[Delivery], decision: PacingDecision) -> None:
        taken = {row.id for row in decision.rows}
        rest = [row for row in rows if row.id not in taken]
        if not rest:
            return
        row = await self._db.fetchone("SELECT next_attempt_ms FROM outbox WHERE id = ?", (decision.rows[0].id,))
        until = int(row[0]) if row is not None else self._clock()
        await self._defer(rest, max(until, self._clock()), f"held while {recipient} deliveries are retried")

    # Email

    async def _build(self, recipient: str, batch: Sequence[Delivery]) -> tuple[str, bytes] | set[int]:
        """Build the email for ``batch`` and return its Message-ID and bytes, or fail the rows that cannot be built.

        Any exception while building is permanent, because the same rows raise again at every pass. When a
        digest cannot be built, each of its alerts is tried alone, and only those that raise alone fail (all
        of them if none does). Returns the ids marked ``failed`` in that case, never an empty set.
        """
        alerts = await outbox.read_alerts(self._db, [row.alert_id for row in batch])
        try:
            return self._render(recipient, batch, alerts)
        except Exception as exc:
            failures = self._unbuildable(recipient, batch, alerts) if len(batch) > 1 else []
            failures = failures or [(row.id, exc) for row in batch]
        await self._fail_unbuildable(recipient, failures)
        return {delivery_id for delivery_id, _ in failures}

    def _render(self, recipient: str, batch: Sequence[Delivery], alerts: dict[int, AlertView]) -> tuple[str, bytes]:
        views = [alerts[row.alert_id] for row in batch]
        return render_email(views, [row.id for row in batch], sender=self._sender, recipient=recipient)

    def _unbuildable(
        self, recipient: str, batch: Sequence[Delivery], alerts: dict[int, AlertView]
    ) -> list[tuple[int, Exception]]:
        failures: list[tuple[int, Exception]] = []
        for row in batch:
            try:
                self._render(recipient, [row], alerts)
            except Exception as exc:
                failures.append((row.id, exc))
        return failures

    async def _send_email(
        self, recipient: str, decision: PacingDecision, message_id: str, data: bytes
    ) -> SentMessage | None:
        """Send one single or digest email; return what was sent (or may have been), None on failure."""
        ids = [row.id for row in decision.rows]
        async with self._db.transaction() as tx:
            claimed = await outbox.claim(tx, ids, message_id, self._clock())
        if claimed != ids:
            await self._release(claimed)
            return None
        return await self._transmit(recipient, decision, message_id, data)

    async def _transmit(
        self, recipient: str, decision: PacingDecision, message_id: str, data: bytes
    ) -> SentMessage | None:
        ids = [row.id for row in decision.rows]
        data_started = False

        async def before_data() -> None:
            nonlocal data_started
            async with self._db.transaction() as tx:
                await outbox.mark_data_started(tx, ids, self._clock())
            data_started = True

        try:
            await self._email.send(recipient, data, before_data=before_data)
        except asyncio.CancelledError:
            error = "cancelled during shutdown"
            settle = self._mark_unknown(ids, error) if data_started else self._retry_now(ids, error)
            await _settle(settle)
            raise
        except TransientDeliveryError as exc:
            await _settle(self._retry_later(decision.rows, exc))
            return None
        except PermanentDeliveryError as exc:
            await _settle(self._fail(ids, exc))
            return None
        except UnknownOutcomeError as exc:
            await _settle(self._mark_unknown(ids, str(exc)))
            logger.error("Outbox: email %s to %s has an unknown outcome: %s", message_id, recipient, exc.detail)
            return SentMessage(message_id, self._clock(), len(ids))
        except Exception as exc:
            # A bug must neither leave rows claimed forever nor retry them at once: settle them as for a
            # failure at the same stage, after the usual retry delay.
            logger.exception("Outbox: email %s to %s raised an unexpected error", message_id, recipient)
            error = f"unexpected {type(exc).__name__}"
            if data_started:
                await _settle(self._mark_unknown(ids, error))
            else:
                await _settle(self._retry_later(decision.rows, TransientDeliveryError(recipient, error)))
            return None
        await _settle(self._mark_sent(ids))
        logger.info("Outbox: sent %s (%d alerts) to %s", message_id, len(ids), recipient)
        return SentMessage(message_id, self._clock(), len(ids))

    # Webhooks

    async def _post(self, row: Delivery) -> int:
        async with self._db.transaction() as tx:
            claimed = await outbox.claim(tx, [row.id], None, self._clock())
        if not claimed:
            return 0
        key = f"whaled-alert-{row.alert_id}-{hashlib.sha256(row.target.encode()).hexdigest()[:12]}"
        try:
            alert = (await outbox.read_alerts(self._db, [row.alert_id]))[row.alert_id]
            await self._webhook.post(row.target, webhook_payload(alert), delivery_id=row.id, idempotency_key=key)
        except asyncio.CancelledError:
            await _settle(self._retry_now([row.id], "cancelled during shutdown"))
            raise
        except TransientDeliveryError as exc:
            await _settle(self._retry_later([row], exc))
        except PermanentDeliveryError as exc:
            await _settle(self._fail([row.id], exc))
        except Exception as exc:
            # As for email: never leave the row claimed, and retry only after the usual delay.
            logger.exception("Outbox: webhook delivery %d of alert %d raised an unexpected error", row.id,
                             row.alert_id)  # fmt: skip
            error = TransientDeliveryError(row.target, f"unexpected {type(exc).__name__}")
            await _settle(self._retry_later([row], error))
        else:
            await _settle(self._mark_sent([row.id]))
            logger.info("Outbox: webhook delivery %d of alert %d posted", row.id, row.alert_id)
        return 1

    # Settling rows

    def _delay_ms(self, attempts: int) -> int:
        ceiling = min(self._retry_base_ms * 2 ** max(attempts - 1, 0), self._retry_max_ms)
        return int(ceiling / 2 + random.uniform(0, ceiling / 2))

    async def _retry_later(self, rows: Sequence[Delivery], exc: DeliveryError) -> None:
        attempts = max(row.attempts for row in rows) + 1
        now = self._clock()
        async with self._db.transaction() as tx:
            await outbox.mark_retry(tx, [row.id for row in rows], str(exc), now + self._delay_ms(attempts), now,
                                    self._max_attempts)  # fmt: skip
        self.counters["retried"] += len(rows)
        logger.warning("Outbox: attempt %d to %s failed (%s); retrying later", attempts, exc.target, exc.detail)

    async def _retry_now(self, ids: Sequence[int], error: str) -> None:
        now = self._clock()
        async with self._db.transaction() as tx:
            await outbox.mark_retry(tx, ids, error, now, now, self._max_attempts + 1)

    async def _release(self, ids: Sequence[int]) -> None:
        if ids:
            await self._retry_now(ids, "released: another pass claimed part of the batch")

    async def _fail(self, ids: Sequence[int], exc: DeliveryError) -> None:
        async with self._db.transaction() as tx:
            await outbox.mark_failed(tx, ids, str(exc), self._clock())
        self.counters["failed"] += len(ids)
        logger.error("Outbox: %s to %s failed for good: %s", _deliveries(ids), exc.target, exc.detail)

    async def _fail_unbuildable(self, recipient: str, failures: Sequence[tuple[int, Exception]]) -> None:
        now = self._clock()
        async with self._db.transaction() as tx:
            for delivery_id, exc in failures:
                await outbox.mark_failed(tx, [delivery_id], _build_error(exc), now)
        self.counters["failed"] += len(failures)
        ids = [delivery_id for delivery_id, _ in failures]
        first = failures[0][1]
        logger.error("Outbox: email %s to %s failed for good: %s", _deliveries(ids), recipient, _build_error(first),
                     exc_info=first)  # fmt: skip

    async def _mark_unknown(self, ids: Sequence[int], error: str) -> None:
        async with self._db.transaction() as tx:
            await outbox.mark_unknown(tx, ids, error, self._clock())
        self.counters["unknown"] += len(ids)

    async def _mark_sent(self, ids: Sequence[int]) -> None:
        async with self._db.transaction() as tx:
            await outbox.mark_sent(tx, ids, self._clock())
        self.counters["sent"] += len(ids)


def _deliveries(ids: Sequence[int]) -> str:
    """Name rows in a log line: ``delivery 4`` or ``deliveries 4, 7``."""
    noun = "delivery" if len(ids) == 1 else "deliveries"
    return f"{noun} {', '.join(map(str, ids))}"


def _build_error(exc: Exception) -> str:
    return f"the email could not be built: {type(exc).__name__}: {exc}"


async def _settle(call: Coroutine[Any, Any, None]) -> None:
    """Record a delivery's outcome even if the caller is cancelled meanwhile (bounded wait)."""
    task = asyncio.ensure_future(call)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait({task}, timeout=_SETTLE_GRACE_S)
        raise

"""The orders completeness audit: does the ERP hold every order the channel took recently?

The orders flow pulls "changed since" windows with a lookback, which catches late writes of a few
minutes; an order the platform stamped far in the past, or one lost to a platform-side bug, is only
found by asking the other way round. Every ``order_audit_interval`` (default a day) the orders flow,
once caught up, lists the ids of the orders the channel created in the last ``order_audit_window``
(summaries: one request a page) and compares them with its own. An order that is wanted (its status
and payment pass the channel's filters), not in the ERP and not parked is missing: it is logged once
as ``orders.audit_missing`` (a gap in the pull worth knowing about) and imported through the normal
path. The audit's time is kept in ``sync_state`` so a restart does not repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from channels.base import PermanentError, RateLimited, TransientError
from channels.models import OrderSummary
from daemon.flows.runner import RunContext
from daemon.store import import_failures, orders, sync_state
from daemon.store.sync_state import Cursor

if TYPE_CHECKING:  # the orders flow owns the audit
    from daemon.flows.orders import OrdersJob

AUDIT_STATE_KEY = "orders_audit"
"""The ``sync_state`` row (flow column) whose watermark is when the last audit finished."""
MAX_LIST_PAGES = 400
"""Pages listed per audit (20,000 orders at 50 a page); a bigger window is cut short and says so."""
MAX_IMPORTS_PER_RUN = 200
"""Missing orders fetched per run; when more are missing the audit stays due and goes on next run."""
RETRY_AFTER_FAILURE = timedelta(minutes=15)
"""A listing that failed is tried again this much later, not on every orders run: the audit must
never hold up the pull (a platform that rejects the creation-window filters, say)."""


@dataclass
class AuditReport:
    window_from: datetime
    window_to: datetime
    listed: int = 0
    known: int = 0
    parked: int = 0
    not_wanted: int = 0
    unreadable: int = 0
    missing: list[str] = field(default_factory=list)
    imported: int = 0
    failed: int = 0
    truncated: bool = False

    @property
    def finished(self) -> bool:
        """Every missing order was dealt with this run (else the audit stays due)."""
        return len(self.missing) <= MAX_IMPORTS_PER_RUN


class OrderAudit:
    """Runs inside the orders flow's run (same rate limit, pause switch and breaker)."""

    def __init__(self, job: OrdersJob) -> None:
        self.job = job

    async def due(self, now: datetime) -> bool:
        """An interval after the last audit. The first caught-up run only sets the baseline: the
        first pull has just read the whole initial window, so the first audit comes a day later."""
        interval = self.job.config.order_audit_interval
        if interval <= 0:
            return False
        async with self.job.db.read() as conn:
            last = (await sync_state.load(conn, self.job.channel, AUDIT_STATE_KEY)).watermark
        if last is None:
            await self._finish(now)
            return False
        return (now - last).total_seconds() >= interval

    async def run_if_due(self, run: RunContext) -> AuditReport | None:
        now = self.job.clock.now()
        if not await self.due(now):
            return None
        report = AuditReport(now - timedelta(seconds=self.job.config.order_audit_window), now)
        try:
            summaries = await self._list(report, run.batch_size)
        except NotImplementedError:
            run.log.info("orders.audit_unsupported", kind=self.job.config.kind)
            await self._finish(now)
            return None
        except (TransientError, RateLimited, PermanentError) as exc:
            run.log.warning("orders.audit_failed", error=str(exc), retry_in=RETRY_AFTER_FAILURE.seconds)
            interval = timedelta(seconds=self.job.config.order_audit_interval)
            await self._finish(now - interval + RETRY_AFTER_FAILURE)
            return None
        await self._compare(report, summaries)
        for remote_id in report.missing[:MAX_IMPORTS_PER_RUN]:
            outcome = await self.job.fetch_and_import(run, remote_id, "order.imported_by_audit")
            report.imported += outcome == "imported"
            report.failed += outcome == "parked"
            report.not_wanted += outcome == "not_wanted"
        self._log(run, report)
        if report.finished:
            await self._finish(now)
        return report

    async def _list(self, report: AuditReport, limit: int) -> list[OrderSummary]:
        summaries: dict[str, OrderSummary] = {}
        page: str | None = None
        for _ in range(MAX_LIST_PAGES):
            listed = await self.job.connector.list_orders(
                created_from=report.window_from, created_to=report.window_to, page=page, limit=limit
            )
            report.unreadable += listed.unreadable
            summaries.update((s.remote_id, s) for s in listed.summaries)
            page = listed.next_page
            if page is None:
                break
        else:
            report.truncated = True
        report.listed = len(summaries)
        return list(summaries.values())

    async def _compare(self, report: AuditReport, summaries: list[OrderSummary]) -> None:
        async with self.job.db.read() as conn:
            known = await orders.existing_remote_ids(conn, self.job.channel, [s.remote_id for s in summaries])
            parked = set(await import_failures.open_remote_ids(conn, self.job.channel, "order"))
        for summary in summaries:
            if summary.remote_id in known:
                report.known += 1
            elif summary.remote_id in parked:
                report.parked += 1
            elif not self._wanted(summary):
                report.not_wanted += 1
            else:
                report.missing.append(summary.remote_id)

    def _wanted(self, summary: OrderSummary) -> bool:
        """The flow's filters, as far as a summary tells (unknown: fetch it and let the import decide)."""
        statuses = self.job.config.order_statuses
        if statuses and summary.status is not None and summary.status not in statuses:
            return False
        return not (self.job.config.only_paid and summary.paid is False)

    def _log(self, run: RunContext, report: AuditReport) -> None:
        window = {"window_from": report.window_from.isoformat(), "window_to": report.window_to.isoformat()}
        if report.missing:
            run.log.warning(
                "orders.audit_missing",
                count=len(report.missing),
                remote_ids=report.missing[:50],
                **window,
            )
        run.log.info(
            "orders.audit",
            listed=report.listed,
            known=report.known,
            parked=report.parked,
            not_wanted=report.not_wanted,
            unreadable=report.unreadable,
            missing=len(report.missing),
            imported=report.imported,
            failed=report.failed,
            truncated=report.truncated,
            **window,
        )

    async def _finish(self, now: datetime) -> None:
        async with self.job.db.write() as conn:
            await sync_state.save(conn, self.job.channel, AUDIT_STATE_KEY, Cursor(watermark=now), now)

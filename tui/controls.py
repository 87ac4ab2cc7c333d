"""Every action the dashboard offers, each one a control-API call whose outcome is shown to the user.

Views, key bindings and the command palette all come through here, so an action behaves the same
whichever way it was asked for, and an error reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.notifications import SeverityLevel

from daemon.controlapi.client import ControlClient, DaemonNotRunning
from daemon.controlapi.wire import ActionResult
from tui.channel_table import Target
from tui.connection import Connection, describe_error
from tui.i18n import Translator

Notify = Callable[[str, str, SeverityLevel], None]
"""(message, title, severity)."""


class Controls:
    def __init__(
        self,
        connection: Connection,
        tr: Translator,
        notify: Notify,
        after_action: Callable[[ActionResult], None] | None = None,
    ) -> None:
        self._connection = connection
        self._tr = tr
        self._notify = notify
        self._after = after_action

    async def sync(self, target: Target | None) -> ActionResult | None:
        if target is None:
            return await self._act(self._tr("Sync now: everything"), lambda c: c.sync())
        return await self._act(
            self._tr("Sync now: {target}", target=target),
            lambda c: c.sync(channel=target.channel, flow=target.flow),
        )

    async def pause(self, target: Target) -> ActionResult | None:
        return await self._act(
            self._tr("Pause {target}", target=target), lambda c: c.pause(target.channel, flow=target.flow)
        )

    async def resume(self, target: Target) -> ActionResult | None:
        return await self._act(
            self._tr("Resume {target}", target=target), lambda c: c.resume(target.channel, flow=target.flow)
        )

    async def reload(self) -> ActionResult | None:
        return await self._act(self._tr("Reload settings"), lambda c: c.reload())

    async def push_stock(self, sku: str) -> ActionResult | None:
        return await self._act(self._tr("Push stock of {sku}", sku=sku), lambda c: c.push_stock(sku))

    async def link_product(self, sku: str, channel: str, remote_id: str) -> ActionResult | None:
        return await self._act(
            self._tr("Link {sku} on {channel}", sku=sku, channel=channel),
            lambda c: c.link_product(sku, channel, remote_id),
        )

    async def retry_outbox(self, ids: list[int] | None = None) -> ActionResult | None:
        if ids is not None and len(ids) == 1:
            label = self._tr("Retry outbox item {id}", id=ids[0])
        else:
            label = self._tr("Retry all failed outbox items")
        return await self._act(label, lambda c: c.retry_outbox(ids=ids))

    async def dismiss_import_failure(self, failure_id: int) -> ActionResult | None:
        return await self._act(
            self._tr("Dismiss import failure {id}", id=failure_id),
            lambda c: c.dismiss_import_failure(failure_id),
        )

    async def _act(
        self, label: str, request: Callable[[ControlClient], Awaitable[ActionResult]]
    ) -> ActionResult | None:
        try:
            result = await self._connection.call(request)
        except DaemonNotRunning:
            self._fail(label, self._tr("the daemon is not running"))
            return None
        except Exception as exc:  # refused, timed out, or an answer that did not parse: say so, never crash
            self._fail(label, describe_error(exc))
            return None
        self._notify(result.message or self._tr("done"), label, "information" if result.ok else "error")
        if self._after is not None:
            self._after(result)
        return result

    def _fail(self, label: str, error: str) -> None:
        self._notify(self._tr("{action} failed: {error}", action=label, error=error), label, "error")

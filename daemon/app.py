"""The daemon process: start-up, signals, reload, graceful stop, and the control API's runtime.

Start-up order matters: logging first (so nothing said during start-up is lost), then the log
database, the state database (migrated), the channel table and mappings, the supervisors, the change
watcher, the control socket, and last READY=1 to systemd. Stop runs it backwards: STOPPING=1, flows
finish their in-flight batch (bounded by ``shutdown_timeout``), then every log line is flushed.

Signals: SIGUSR1 syncs every channel now, SIGHUP reloads settings (validated first; a bad file keeps
the old settings running), SIGTERM/SIGINT stop gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from channels.http import open_transport
from channels.models import FlowName
from channels.transport import Transport
from daemon import __version__
from daemon.clock import SYSTEM_CLOCK, Clock
from daemon.controlapi.server import ControlServer
from daemon.controlapi.wire import (
    ActionResult,
    ChannelStatus,
    DaemonStatus,
    LogPage,
    LogRow,
)
from daemon.erp import ErpService
from daemon.events import EventBus
from daemon.flows import build_job
from daemon.flows.config import ChannelConfig
from daemon.flows.runner import FlowTiming
from daemon.heap import settle_heap
from daemon.i18n import translate
from daemon.logbook import LogBook, LogSink, configure_logging, set_log_level, set_stdout_items
from daemon.settings import ChannelSettings, Settings, SettingsError, format_problems, load_settings
from daemon.statedb import StateDB
from daemon.store import channels as channels_repo
from daemon.store import mappings, outbox, stock
from daemon.store.db import ChangeWatcher
from daemon.store.errors import StoreError
from daemon.supervisor import OUTBOX_ENTITY_FLOW, START_SPREAD_SECONDS, ChannelSupervisor
from daemon.syncrate import SyncRate
from daemon.systemd import Notifier, watchdog_interval

log = structlog.get_logger("storesync.daemon")

STATUS_PUSH_SECONDS = 1.0
SD_STATUS_SECONDS = 10.0


class StartupError(Exception):
    """The daemon cannot start as configured (unwritable state dir, socket in use, ...)."""


def channel_config(name: str, channel: ChannelSettings, settings: Settings) -> ChannelConfig:
    """Translate one channel's settings into what the flows use."""
    effective = channel.effective(settings.defaults)
    flows = {
        flow: FlowTiming(
            interval=flow_settings.interval,
            batch_size=flow_settings.batch_size,
            rate_limit=flow_settings.rate_limit,
        )
        for flow, flow_settings in channel.active_flows().items()
    }
    return ChannelConfig(
        name=name,
        kind=channel.kind,
        enabled=channel.enabled,
        order_statuses=frozenset(channel.order_statuses),
        only_paid=channel.only_paid,
        link_by=channel.link_by,
        create_missing_products=channel.create_missing_products,
        stock_warehouses=tuple(channel.stock_warehouses),
        sale_warehouse=channel.sale_warehouse,
        stock_buffer=channel.stock_buffer,
        channel_holds_stock_in=frozenset(channel.channel_holds_stock_in),
        price_adjust_percent=Decimal(str(channel.price_adjust_percent)),
        tracked_carriers=tuple(channel.carriers),
        delivered_status=channel.delivered_status,
        tracking_horizon_days=channel.tracking_horizon_days,
        cursor_lookback=effective.cursor_lookback,
        order_audit_interval=effective.order_audit_interval,
        order_audit_window=effective.order_audit_window,
        outbox_max_attempts=effective.outbox_max_attempts,
        breaker_failures=effective.circuit_breaker_failures,
        breaker_cooldown=effective.circuit_breaker_cooldown,
        mappings={kind: dict(table) for kind, table in channel.mappings.items()},
        flows=flows,
    )


class Daemon:
    """The running daemon; implements ``daemon.controlapi.runtime.Runtime``."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        start_spread: float | None = None,
        freeze_heap: bool = False,
    ) -> None:
        self.settings = settings
        self.freeze_heap = freeze_heap
        """Freeze what start-up built out of the garbage collector's sight (``daemon.heap``): the
        process's own choice, so ``run_daemon`` sets it; a daemon started inside a test does not."""
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.environ = dict(os.environ if environ is None else environ)
        self.clock = clock
        self.start_spread = start_spread
        self.started_at = clock.now()
        self.settings_loaded_at: datetime | None = clock.now()
        self.last_reload_error: str | None = None
        self.notifier = Notifier.from_env(self.environ)
        self.sink = LogSink(clock=clock)
        self.supervisors: dict[str, ChannelSupervisor] = {}
        self.rates: dict[str, SyncRate] = {}
        self._stop = asyncio.Event()
        self.started = False
        """Start-up is complete (a reload before that would race it)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        self._dispatching = False
        self._dispatch_again = False
        self.logbook: LogBook | None = None
        self.db: StateDB | None = None
        self._erp: ErpService | None = None
        self.transport: Transport | None = None
        self.watcher: ChangeWatcher | None = None
        self.control: ControlServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        configure_logging(self.settings.daemon.log_level, sink=self.sink, clock=self.clock)
        set_stdout_items(self.settings.daemon.log_items_to_stdout)
        # First: a SIGTERM during start-up then means "stop once started", not death by default action.
        self._install_signals()
        state_dir = self.settings.daemon.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            probe = state_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StartupError(f"state directory {state_dir} is not usable: {exc.strerror or exc}") from None
        # The socket's lock says "one daemon per state": take it before touching a database, so a
        # second daemon leaves without writing a log line or starting a flow.
        self.control = ControlServer(self, self.settings.socket_path)
        try:
            self.control.claim()
        except Exception as exc:
            raise StartupError(str(exc)) from None
        try:
            await self._open_databases()
        except (StoreError, OSError, sqlite3.Error, RuntimeError) as exc:
            raise StartupError(str(exc)) from None
        assert self.db is not None
        self._erp = ErpService(
            self.db, self.clock, self._default_warehouse(), locale=self.settings.daemon.locale
        )
        await self._sync_channel_table()
        self.transport = open_transport(
            self.settings.daemon.http_client, user_agent=f"storesync/{__version__}"
        )
        for name, channel in self.settings.enabled_channels().items():
            self._start_channel(name, channel)
        self.watcher = ChangeWatcher(self.settings.state_db_path, self._on_db_change, self.clock)
        await self.watcher.start()
        try:
            await self.control.start()
        except Exception as exc:
            raise StartupError(str(exc)) from None
        self._tasks.append(asyncio.create_task(self._status_loop(), name="status"))
        interval = watchdog_interval(self.environ) if self.settings.daemon.watchdog else None
        if interval:
            self._tasks.append(asyncio.create_task(self._watchdog_loop(interval), name="watchdog"))
        self._on_db_change()  # anything queued while we were down goes out now
        if self.freeze_heap:
            settle_heap()
        self.started = True
        self.notifier.ready(self._sd_status())
        log.info(
            "daemon.started",
            version=__version__,
            pid=os.getpid(),
            channels=sorted(self.supervisors),
            socket=str(self.settings.socket_path),
        )

    async def _open_databases(self) -> None:
        self.logbook = await LogBook.open(self.settings.log_db_path, sink=self.sink, clock=self.clock)
        self.logbook.start_retention(
            days=self.settings.daemon.log_retention_days,
            keep_rows=self.settings.daemon.log_retention_rows,
            clock=self.clock,
        )
        self.db = await StateDB.open(self.settings.state_db_path)

    async def run(self) -> None:
        try:
            await self.start()
        except BaseException:
            # Undo a partial start (flows, database threads) or the process never exits.
            await self.shutdown(started=False)
            raise
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self, *, started: bool = True) -> None:
        if started:
            self.notifier.stopping("stopping: finishing in-flight batches")
            log.info("daemon.stopping")
        timeout = self.settings.daemon.shutdown_timeout
        await asyncio.gather(
            *(sup.stop(timeout) for sup in self.supervisors.values()), return_exceptions=True
        )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.watcher is not None:
            await self.watcher.stop()
        if self.control is not None:
            await self.control.stop()
        if self.transport is not None:
            await self.transport.aclose()
        if self.db is not None:
            await self.db.close()
        if started:
            log.info("daemon.stopped")
        if self.logbook is not None:
            await self.logbook.aclose()
        self.notifier.close()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGUSR1, self._on_sigusr1)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sigusr1(self) -> None:
        log.info("signal.sync_all")
        for supervisor in self.supervisors.values():
            supervisor.sync_now(manual=False)

    def _on_sighup(self) -> None:
        if not self.started:
            log.warning("signal.reload_ignored", reason="still starting")
            return

        async def reload() -> None:
            await self.reload()

        self._tasks.append(asyncio.create_task(reload(), name="reload"))

    # --- channels --------------------------------------------------------------------------------

    def _default_warehouse(self) -> str:
        for channel in self.settings.enabled_channels().values():
            return channel.sale_warehouse
        return "MAIN"

    async def _sync_channel_table(self) -> None:
        assert self.db is not None
        async with self.db.write() as conn:
            await channels_repo.sync_channels(
                conn,
                [
                    (name, ch.kind, ch.enabled and ch.receives_pushes())
                    for name, ch in self.settings.channels.items()
                ],
            )
            await channels_repo.set_holds(
                conn, {name: ch.channel_holds_stock_in for name, ch in self.settings.channels.items()}
            )
            for name, channel in self.settings.channels.items():
                for code in {*channel.stock_warehouses, channel.sale_warehouse}:
                    await stock.ensure_warehouse(conn, code)
                tables: dict[str, dict[str, str | int]] = {k: dict(v) for k, v in channel.mappings.items()}
                await mappings.load_mappings(conn, name, tables)

    def _start_channel(self, name: str, channel: ChannelSettings) -> None:
        assert self.db is not None and self.transport is not None
        supervisor = ChannelSupervisor(
            channel_config(name, channel, self.settings),
            self.settings.channel_context(name),
            db=self.db,
            clock=self.clock,
            transport=self.transport,
            job_factory=build_job,
            start_spread=START_SPREAD_SECONDS if self.start_spread is None else self.start_spread,
        )
        rate = self.rates.setdefault(name, SyncRate(self.clock))
        for runner in supervisor.runners.values():
            runner.on_items = rate.add
        self.supervisors[name] = supervisor
        supervisor.start()

    def _on_db_change(self) -> None:
        """A commit happened (ours or another program's): wake the flows that have work queued."""
        if self._dispatching:
            self._dispatch_again = True
            return
        self._dispatching = True
        task = asyncio.create_task(self._dispatch_outbox(), name="outbox-dispatch")
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _dispatch_outbox(self) -> None:
        assert self.db is not None
        try:
            while True:
                self._dispatch_again = False
                async with self.db.read() as conn:
                    rows = await outbox.pending_kinds(conn, list(self.supervisors))
                wanted: dict[str, set[str]] = {}
                for row in rows:
                    wanted.setdefault(row[0], set()).add(row[1])
                for name, entities in wanted.items():
                    supervisor = self.supervisors.get(name)
                    if supervisor is not None:
                        supervisor.wake_for_outbox(entities)
                if not self._dispatch_again:
                    return
        except Exception as exc:  # the watcher calls us again on the next commit
            log.warning("outbox.dispatch_failed", error=str(exc))
        finally:
            self._dispatching = False

    # --- reload ----------------------------------------------------------------------------------

    async def reload(self) -> ActionResult:
        """Validate the whole new file first; apply it, or keep the old settings and say why."""
        async with self._reload_lock:
            self.notifier.reloading("reloading settings")
            try:
                new = load_settings(self.config_path, environ=self.environ, overrides=self.overrides)
            except SettingsError as err:
                self.last_reload_error = format_problems(err)
                log.error("settings.reload_failed", problems=err.problems)
                self.notifier.ready(self._sd_status())
                return ActionResult(
                    ok=False,
                    message=self._t("reload.failed", count=len(err.problems)),
                    details={"problems": err.problems},
                )
            old = self.settings
            self.settings = new
            set_log_level(new.daemon.log_level)
            set_stdout_items(new.daemon.log_items_to_stdout)
            await self._sync_channel_table()
            changed = await self._apply_channels(old, new)
            self.settings_loaded_at = self.clock.now()
            self.last_reload_error = None
            log.info("settings.reloaded", **changed)
            if self.freeze_heap:
                settle_heap()
            self.notifier.ready(self._sd_status())
            self._on_db_change()
            path = str(new.config_path) if new.config_path else "settings.toml"
            return ActionResult(ok=True, message=self._t("reload.ok", path=path), details=changed)

    async def _apply_channels(self, old: Settings, new: Settings) -> dict[str, list[str]]:
        before = old.enabled_channels()
        after = new.enabled_channels()
        stopped = [name for name in self.supervisors if name not in after]
        restarted = [
            name
            for name in after
            if name in self.supervisors
            and (
                new.channel_context(name) != self.supervisors[name].context
                or set(channel_config(name, after[name], new).flows)
                != set(self.supervisors[name].config.flows)
            )
        ]
        tuned = [name for name in after if name in self.supervisors and name not in restarted]
        started = [name for name in after if name not in self.supervisors]
        timeout = new.daemon.shutdown_timeout
        for name in stopped + restarted:
            await self.supervisors.pop(name).stop(timeout)
        for name in restarted + started:
            self._start_channel(name, after[name])
        for name in tuned:
            self.supervisors[name].apply_timings(channel_config(name, after[name], new))
        del before
        return {"started": started, "stopped": stopped, "restarted": restarted, "updated": tuned}

    # --- status ----------------------------------------------------------------------------------

    @property
    def erp(self) -> ErpService:
        assert self._erp is not None, "the daemon has not started"
        return self._erp

    @property
    def bus(self) -> EventBus:
        assert self.logbook is not None
        return self.logbook.bus

    async def status(self) -> DaemonStatus:
        assert self.db is not None
        async with self.db.read() as conn:
            counts = await outbox.counts(conn)
            open_failures = await conn.execute_fetchall(
                "SELECT channel, COUNT(*) FROM import_failures WHERE state = 'open' GROUP BY channel"
            )
        failures_by_channel = {row[0]: int(row[1]) for row in open_failures}
        channels: list[ChannelStatus] = []
        for name, channel in self.settings.channels.items():
            supervisor = self.supervisors.get(name)
            if supervisor is None:
                channels.append(ChannelStatus(name=name, kind=channel.kind, enabled=False, state="disabled"))
                continue
            per_flow: dict[FlowName, tuple[int, int]] = {}
            for entity, flow in OUTBOX_ENTITY_FLOW.items():
                states = counts.get((name, entity), {})
                per_flow[flow] = (states.get("pending", 0), states.get("failed", 0) + states.get("parked", 0))
            per_flow[FlowName.ORDERS] = (0, failures_by_channel.get(name, 0))
            status = supervisor.status(per_flow)
            status.synced_per_minute = self.rates[name].per_minute() if name in self.rates else []
            channels.append(status)
        return DaemonStatus(
            version=__version__,
            pid=os.getpid(),
            started_at=self.started_at,
            config_path=str(self.settings.config_path) if self.settings.config_path else None,
            settings_loaded_at=self.settings_loaded_at,
            last_reload_error=self.last_reload_error,
            log_queue_dropped=self.sink.dropped,
            channels=channels,
        )

    async def _status_loop(self) -> None:
        last_sd = -SD_STATUS_SECONDS
        while True:
            await self.clock.sleep(STATUS_PUSH_SECONDS)
            try:
                if self.logbook is not None and self.bus.has_subscribers:
                    self.bus.publish_status(await self.status())
                if self.clock.monotonic() - last_sd >= SD_STATUS_SECONDS:
                    last_sd = self.clock.monotonic()
                    self.notifier.status(self._sd_status())
            except Exception as exc:
                log.warning("status.publish_failed", error=str(exc))

    async def _watchdog_loop(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop itself: a stuck loop stops the pings and systemd restarts us."""
        while True:
            self.notifier.watchdog()
            await self.clock.sleep(interval)

    def _sd_status(self) -> str:
        failing = [n for n, s in self.supervisors.items() if s.health.failing_since or s.health.needs_reauth]
        text = f"{len(self.supervisors)} channel(s) running"
        if failing:
            text += f"; failing: {', '.join(sorted(failing))}"
        return text

    # --- runtime actions -------------------------------------------------------------------------

    def _t(self, key: str, **params: object) -> str:
        """A message for people, in the store's configured language."""
        return translate(key, self.settings.daemon.locale, **params)

    def _supervisor(self, channel: str) -> ChannelSupervisor:
        try:
            return self.supervisors[channel]
        except KeyError:
            known = ", ".join(sorted(self.supervisors)) or "none"
            raise KeyError(f"no running channel {channel!r} (running: {known})") from None

    async def sync_now(self, channel: str | None, flow: str | None) -> ActionResult:
        if channel is not None:
            flows = self._supervisor(channel).sync_now(flow)
            message = (
                self._t("sync.requested_flow", flow=flow, channel=channel)
                if flow
                else self._t("sync.requested", channel=channel)
            )
            return ActionResult(ok=True, message=message, details={"channel": channel, "flows": flows})
        touched = []
        for name, supervisor in self.supervisors.items():
            if flow is None or FlowName(flow) in supervisor.runners:
                supervisor.sync_now(flow)
                touched.append(name)
        if flow is not None and not touched:
            raise KeyError(f"no running channel has the flow {flow!r}")
        message = (
            self._t("sync.requested_flow", flow=flow, channel=", ".join(touched))
            if flow
            else self._t("sync.requested_all")
        )
        return ActionResult(ok=True, message=message, details={"channels": touched})

    async def pause(self, channel: str, flow: str | None) -> ActionResult:
        self._supervisor(channel).pause(flow)
        where = f"{channel}/{flow}" if flow else channel
        return ActionResult(ok=True, message=self._t("channel.paused", channel=where))

    async def resume(self, channel: str, flow: str | None) -> ActionResult:
        self._supervisor(channel).resume(flow)
        where = f"{channel}/{flow}" if flow else channel
        return ActionResult(ok=True, message=self._t("channel.resumed", channel=where))

    async def push_stock(self, sku: str) -> ActionResult:
        return await self.erp.push_stock(sku, sorted(self.supervisors))

    async def link_product(self, sku: str, channel: str, remote_id: str) -> ActionResult:
        self._supervisor(channel)
        return await self.erp.link_product(sku, channel, remote_id)

    async def unlink_product(self, sku: str, channel: str) -> ActionResult:
        self._supervisor(channel)
        return await self.erp.unlink_product(sku, channel)

    async def retry_outbox(self, ids: list[int] | None, channel: str | None) -> ActionResult:
        if channel is not None:
            self._supervisor(channel)
        return await self.erp.retry_outbox(ids, channel)

    async def explain(self, channel: str, entity: str, sku: str) -> dict[str, Any]:
        if channel not in self.settings.channels:
            raise KeyError(f"no channel {channel!r}")
        return await self.erp.explain(channel, entity, sku)

    async def query_logs(
        self,
        *,
        channel: str | None,
        flow: str | None,
        level: str | None,
        entity: str | None,
        entity_id: str | None,
        since: datetime | None,
        until: datetime | None,
        q: str | None,
        cursor: int | None,
        limit: int,
    ) -> LogPage:
        assert self.logbook is not None
        return await self.logbook.query(
            channel=channel,
            flow=flow,
            level=level,
            entity=entity,
            entity_id=entity_id,
            since=since,
            until=until,
            q=q,
            cursor=cursor,
            limit=limit,
        )

    async def log_rows_after(self, after_id: int, limit: int) -> list[LogRow]:
        assert self.logbook is not None
        return await self.logbook.rows_after(after_id, limit)


EXIT_STARTUP_ERROR = 1
"""The environment does not let the daemon start (state folder, database file, socket in use).
Like a settings error (2) it needs a person: the unit's RestartPreventExitStatus lists both."""
EXIT_CRASHED = 70
"""An unexpected error (EX_SOFTWARE): unlike 1 and 2, systemd restarts the daemon after it."""


async def _serve(daemon: Daemon) -> int:
    try:
        await daemon.run()
    except StartupError as exc:
        log.error("daemon.cannot_start", error=str(exc))
        print(f"storesync: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    except Exception as exc:
        log.exception("daemon.crashed", error=f"{type(exc).__name__}: {exc}")
        print(
            f"storesync: stopped by an unexpected error ({type(exc).__name__}); see the log", file=sys.stderr
        )
        return EXIT_CRASHED
    return 0


def run_daemon(config_path: Path | None, overrides: Mapping[str, Any] | None = None) -> int:
    """``storesync run``: load settings (raising SettingsError for the CLI to print) and serve."""
    settings = load_settings(config_path, overrides=overrides)
    daemon = Daemon(settings, config_path=config_path, overrides=overrides, freeze_heap=True)
    return asyncio.run(_serve(daemon))


__all__ = ["Daemon", "StartupError", "channel_config", "run_daemon"]

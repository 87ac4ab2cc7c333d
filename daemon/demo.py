"""``storesync demo``: the bundled simulator, the daemon on the embedded default, and the dashboard.

Everything runs on loopback. The ERP catalog is seeded from the simulator's products (same SKUs, so
they link on first push, with our own stock and prices), and a little activity keeps it alive: a new
order on the channel now and then and a stock movement in the ERP, so something syncs every few
seconds. A Correios simulator runs too, with a carrier channel added through the environment (the
settings file stays the documented example): paid orders get a parcel, the parcels move along, and
the tracking flow marks each order delivered, which the store's channel then shows. Quitting the
dashboard (or Ctrl-C) stops the daemon gracefully and the simulators with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from daemon.cli import configured_locale
from daemon.controlapi.client import ControlClient, DaemonNotRunning
from daemon.settings import resolve_config_path

DEMO_API_KEY = "demo-chave-api"
DEMO_APP_KEY = "demo-chave-aplicacao"
DEFAULT_PORT = 8765
DEMO_RATE_PER_MINUTE = 600
DEMO_CORREIOS = {"usuario": "demo-usuario", "codigo_acesso": "demo-codigo-acesso", "cartao": "0067599079"}
CORREIOS_PORT = 8766


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
            return port


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback simulator only)
        data: dict[str, object] = json.load(response)
        return data


def _post_json(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 (loopback simulator only)
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        data = json.load(response)
        return data if isinstance(data, dict) else {}


def _wait_for(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if callable(check) and check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def catalog_csv(products: list[dict[str, object]], rng: random.Random) -> str:
    """The ERP's own catalog for the simulator's SKUs: our stock and prices win on push."""
    lines = ["sku,name,list_price,sale_price,stock,warehouse"]
    for product in products:
        preco = product.get("preco")
        list_price = preco.get("cheio", "99.90") if isinstance(preco, dict) else "99.90"
        name = str(product.get("nome") or product["sku"]).replace(",", " ")
        lines.append(f"{product['sku']},{name},{list_price},,{rng.randint(0, 40)},MAIN")
    return "\n".join(lines) + "\n"


async def _seed_catalog(socket_path: Path, sim_url: str) -> str:
    state = _get_json(f"{sim_url}/__sim__/state")
    products = state.get("products")
    assert isinstance(products, list)
    async with ControlClient(socket_path) as client:
        result = await client.import_products(catalog_csv(products, random.Random(7)))
    return result.message


async def _activity(
    socket_path: Path, sim_url: str, correios_url: str, stop: threading.Event, skus: list[str]
) -> None:
    """Now and then: a new order on the channel, a stock movement in the ERP, a parcel for a paid
    order, and every parcel one step further along its way."""
    rng = random.Random()
    tick = 0
    parcels: list[str] = []
    async with ControlClient(socket_path) as client:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            tick += 1
            with contextlib.suppress(Exception):
                if tick % 8 == 0 and skus:
                    await client.stock_move(
                        rng.choice(skus), "MAIN", rng.choice([-2, -1, 3, 5]), "adjust", "demo"
                    )
                if tick % 20 == 0:
                    _post_json(f"{sim_url}/__sim__/orders", {"count": 1, "status": "pedido_pago"})
                if tick == 3 or tick % 12 == 0:
                    await _ship_one(client, sim_url, correios_url, parcels)
                if tick % 7 == 0:
                    for code in parcels:
                        with contextlib.suppress(Exception):  # the end of its story: a 400
                            _post_json(f"{correios_url}/__sim__/objects/{code}/advance", {})


async def _ship_one(client: ControlClient, sim_url: str, correios_url: str, parcels: list[str]) -> None:
    """The ERP ships a paid order by PAC: a Correios parcel, its code recorded on the order."""
    orders = _get_json(f"{sim_url}/__sim__/state").get("orders")
    waiting = [
        o
        for o in (orders if isinstance(orders, list) else [])
        if isinstance(o, dict)
        and o.get("situacao") == "pedido_pago"
        and not any(isinstance(e, dict) and e.get("objeto") for e in o.get("envios") or [])
    ]
    if not waiting:
        return
    code = str(_post_json(f"{correios_url}/__sim__/objects", {"story": "delivered"})["code"])
    await client.tracking_add("loja", str(waiting[0]["numero"]), code, carrier="correios_pac")
    parcels.append(code)


def _activity_thread(
    socket_path: Path, sim_url: str, correios_url: str, stop: threading.Event
) -> threading.Thread:
    state = _get_json(f"{sim_url}/__sim__/state")
    products = state.get("products")
    skus = [str(p["sku"]) for p in products if isinstance(p, dict)] if isinstance(products, list) else []
    thread = threading.Thread(
        target=lambda: asyncio.run(_activity(socket_path, sim_url, correios_url, stop, skus)),
        daemon=True,
        name="demo",
    )
    thread.start()
    return thread


def _correios_env(url: str) -> dict[str, str]:
    """The demo's carrier channel, added through the environment (precedence: file < environment)."""
    prefix = "STORESYNC_CHANNELS__CORREIOS__"
    return {
        "DEMO_CORREIOS_USUARIO": DEMO_CORREIOS["usuario"],
        "DEMO_CORREIOS_CODIGO": DEMO_CORREIOS["codigo_acesso"],
        prefix + "KIND": "correios",
        prefix + "BASE_URL": url,
        prefix + "CLIENT_ID": "env:DEMO_CORREIOS_USUARIO",
        prefix + "CLIENT_SECRET": "env:DEMO_CORREIOS_CODIGO",
        prefix + "CARTAO_POSTAGEM": DEMO_CORREIOS["cartao"],
        prefix + "CARRIERS": "correios_pac,correios_sedex",
        prefix + "RATE_LIMIT": "120/min",
        prefix + "FLOWS__TRACKING__INTERVAL": "3s",
    }


def _socket_path(config: Path) -> Path:
    """Where the daemon started by the demo listens (the settings' state dir, relative to the file)."""
    state_dir = Path(os.environ.get("STORESYNC_DAEMON__STATE_DIR", "var"))
    if not state_dir.is_absolute():
        state_dir = config.parent / state_dir
    runtime = os.environ.get("STORESYNC_DAEMON__RUNTIME_DIR")
    return (Path(runtime) if runtime else state_dir) / "control.sock"


def run_demo(args: argparse.Namespace) -> int:
    config = resolve_config_path(getattr(args, "config", None))
    port = _free_port(DEFAULT_PORT)
    sim_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.setdefault("LOJA_CHAVE_API", DEMO_API_KEY)
    env.setdefault("LOJA_CHAVE_APLICACAO", DEMO_APP_KEY)
    env["STORESYNC_CHANNELS__LOJA__BASE_URL"] = sim_url
    # The real Loja Integrada allows 100 requests/min per store; the demo's simulator allows more so
    # the first catalog push is over in seconds instead of a minute.
    env.setdefault("STORESYNC_CHANNELS__LOJA__RATE_LIMIT", f"{DEMO_RATE_PER_MINUTE}/min")
    correios_port = _free_port(CORREIOS_PORT)
    correios_url = f"http://127.0.0.1:{correios_port}"
    env.update(_correios_env(correios_url))
    socket_path = _socket_path(config)
    python = sys.executable
    simulator = subprocess.Popen(  # noqa: S603
        [
            python,
            "-m",
            "channels.simulators.lojaintegrada",
            "--port",
            str(port),
            "--orders",
            "12",
            "--products",
            "25",
            "--rate-limit",
            str(DEMO_RATE_PER_MINUTE),
            "--api-key",
            env["LOJA_CHAVE_API"],
            "--app-key",
            env["LOJA_CHAVE_APLICACAO"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    correios = subprocess.Popen(  # noqa: S603
        [
            python,
            "-m",
            "channels.simulators.correios",
            "--port",
            str(correios_port),
            "--usuario",
            DEMO_CORREIOS["usuario"],
            "--codigo-acesso",
            DEMO_CORREIOS["codigo_acesso"],
            "--cartao-postagem",
            DEMO_CORREIOS["cartao"],
            "--objects",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemon_log = socket_path.parent / "demo-daemon.log"
    daemon_log.parent.mkdir(parents=True, exist_ok=True)
    stop_activity = threading.Event()
    with daemon_log.open("ab") as log_file:
        daemon = subprocess.Popen(  # noqa: S603
            [python, "-m", "daemon", "--config", str(config), "run"],
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        _wait_for(lambda: _get_json(f"{sim_url}/__sim__/state") is not None, "the simulator")
        _wait_for(lambda: _get_json(f"{correios_url}/__sim__/state") is not None, "the Correios simulator")
        _wait_for(lambda: socket_path.exists() or daemon.poll() is not None, "the daemon")
        if daemon.poll() is not None:
            print(f"storesync demo: the daemon exited; see {daemon_log}", file=sys.stderr)
            return 1
        print(
            f"storesync demo: simulators on {sim_url} (Loja Integrada) and {correios_url} (Correios), "
            f"daemon on {socket_path} (log: {daemon_log})"
        )
        print("storesync demo:", asyncio.run(_seed_catalog(socket_path, sim_url)))
        _activity_thread(socket_path, sim_url, correios_url, stop_activity)
        return _front(args, socket_path, config)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, DaemonNotRunning) as exc:
        print(f"storesync demo: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_activity.set()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        for process in (simulator, correios):
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


def _front(args: argparse.Namespace, socket_path: Path, config: Path) -> int:
    """The dashboard when there is a terminal; otherwise follow the log for ``--duration`` seconds."""
    if not getattr(args, "no_tui", False) and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            tui = __import__("tui.app", fromlist=["run"])
        except ImportError as exc:
            print(
                f"storesync demo: the dashboard is not available ({exc}); following the log", file=sys.stderr
            )
        else:
            locale = configured_locale(config)
            result: int = tui.run(str(socket_path), default_locale=locale)
            return result
    duration = float(getattr(args, "duration", 0) or 0)
    return asyncio.run(_follow(socket_path, duration))


async def _follow(socket_path: Path, duration: float) -> int:
    async with ControlClient(socket_path) as client:
        deadline = None if duration <= 0 else time.monotonic() + duration

        async def stream() -> None:
            async for event in client.events(after=None):
                if event.type == "log" and event.log is not None:
                    row = event.log
                    ids = " ".join(
                        f"{k}={v}"
                        for k, v in (("entity", row.entity), ("id", row.entity_id), ("remote", row.remote_id))
                        if v
                    )
                    print(
                        f"{row.ts:%H:%M:%S} {row.level:<7} {row.channel or '-':<6} {row.flow or '-':<13} "
                        f"{row.event} {ids}",
                        flush=True,
                    )

        try:
            if deadline is None:
                await stream()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stream(), timeout=max(0.0, deadline - time.monotonic()))
        except DaemonNotRunning:
            return 1
    return 0

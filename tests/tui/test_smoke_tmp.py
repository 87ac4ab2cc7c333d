from __future__ import annotations
from pathlib import Path
from fake_runtime import FakeRuntime
from tui_support import loaded, make_app, wait_until

async def test_smoke(server, socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        print(app.sub_title)
        app.save_screenshot("/tmp/s1.svg")
        from rich.console import Console
        print(app.export_screenshot()[:100])

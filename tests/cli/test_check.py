"""``storesync check``: each channel of the settings asked one question with its credentials, no
daemon needed; a refused key is named as such and never printed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from channels.simulators.correios import CorreiosSimulator
from channels.simulators.lojaintegrada import LojaIntegradaSimulator
from daemon import cli
from daemon.check import check_channels
from daemon.secrets import SecretRegistry
from daemon.settings import load_settings

API_KEY, APP_KEY = "chk-chave-api-5150", "chk-chave-aplicacao-5150"
USER, ACCESS, CARD = "chk-usuario", "chk-acesso-SECRET-77", "0067599079"


def settings_text(li_url: str, correios_url: str, state_dir: Path) -> str:
    return f"""
[daemon]
state_dir = "{state_dir}"
locale = "en"
[channels.loja]
kind = "lojaintegrada"
base_url = "{li_url}"
api_key = "env:CHK_API"
app_key = "env:CHK_APP"
rate_limit = "6000/min"
[channels.correios]
kind = "correios"
base_url = "{correios_url}"
client_id = "env:CHK_USER"
client_secret = "env:CHK_ACCESS"
cartao_postagem = "{CARD}"
carriers = ["correios_pac"]
"""


@pytest.fixture
async def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    monkeypatch.setenv("CHK_API", API_KEY)
    monkeypatch.setenv("CHK_APP", APP_KEY)
    monkeypatch.setenv("CHK_USER", USER)
    monkeypatch.setenv("CHK_ACCESS", ACCESS)
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    async with (
        LojaIntegradaSimulator(API_KEY, APP_KEY, orders=0, products=1) as li,
        CorreiosSimulator(USER, ACCESS, cartao_postagem=CARD) as correios,
    ):
        path = tmp_path / "settings.toml"
        path.write_text(settings_text(li.url, correios.url, tmp_path / "var"), encoding="utf-8")
        yield path


async def storesync(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def test_every_channel_answers(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await storesync("--config", str(config), "check") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CHANNEL", "KIND", "STATE", "DETAIL"]
    by_channel = {line.split()[0]: line for line in lines[1:]}
    assert "ok" in by_channel["loja"] and "order statuses" in by_channel["loja"]
    assert "ok" in by_channel["correios"] and "token issued" in by_channel["correios"]
    assert await storesync("--config", str(config), "--json", "check", "--channel", "correios") == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert (result["channel"], result["ok"]) == ("correios", True)


async def test_a_refused_key_fails_the_check_and_is_never_printed(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "chk-wrong-key-SECRET-999"
    monkeypatch.setenv("CHK_API", wrong)
    monkeypatch.setenv("CHK_ACCESS", wrong + "-correios")
    assert await storesync("--config", str(config), "check") == 1
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert wrong not in out
    by_channel = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "FAILED" in by_channel["loja"] and "401" in by_channel["loja"]
    assert "FAILED" in by_channel["correios"]
    results = await check_channels(load_settings(config, registry=SecretRegistry()))
    assert [(r.channel, r.ok, r.auth) for r in results] == [("loja", False, True), ("correios", False, True)]


async def test_an_unknown_channel_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await storesync("--config", str(config), "check", "--channel", "nope") == 2
    assert "no channel 'nope'" in capsys.readouterr().err


async def test_an_unreachable_channel_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("CHK_API", "CHK_APP", "CHK_USER", "CHK_ACCESS"):
        monkeypatch.setenv(name, "x-secret-value")
    path = tmp_path / "settings.toml"
    path.write_text(settings_text("http://127.0.0.1:9", "http://127.0.0.1:9", tmp_path / "var"))
    assert await storesync("--config", str(path), "check", "--channel", "loja") == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "Connect" in out

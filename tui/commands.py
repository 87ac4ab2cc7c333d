"""The command palette (ctrl+p): one entry per action, per channel and per flow, in the user's language."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True)
class PaletteCommand:
    name: str
    help: str
    run: Callable[[], object]


class CommandHost(Protocol):
    def palette_commands(self) -> list[PaletteCommand]: ...


class StoresyncCommands(Provider):
    """Asks the app for its commands each time, so new channels and states show up without a restart."""

    def _commands(self) -> list[PaletteCommand]:
        return cast(CommandHost, self.app).palette_commands()

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), partial(command.run), help=command.help)

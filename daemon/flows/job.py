"""What every flow job holds: its channel's rules, the connector, the store and the clock."""

from __future__ import annotations

import random

from channels.base import Channel
from daemon.clock import Clock
from daemon.flows.config import ChannelConfig
from daemon.statedb import StateDB


class ChannelJob:
    def __init__(
        self,
        config: ChannelConfig,
        connector: Channel,
        db: StateDB,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.connector = connector
        self.db = db
        self.clock = clock
        self.rng = rng or random.Random()

    def update_config(self, config: ChannelConfig) -> None:
        """A reload changed the channel's rules; the next run uses them."""
        self.config = config

    @property
    def channel(self) -> str:
        return self.config.name

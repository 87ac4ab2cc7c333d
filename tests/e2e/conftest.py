"""Fixtures for the end-to-end tests: one :class:`Harness` per test, always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    world = Harness()
    try:
        yield world
    finally:
        world.close()

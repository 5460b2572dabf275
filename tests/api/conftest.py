"""A real `cdp serve` on the test database, for the tests that need one."""

from collections.abc import Callable
from functools import partial

import pytest

from tests.conftest import Server


@pytest.fixture
def serve(database: str, serve_on: Callable[..., Server]) -> Callable[..., Server]:
    """Start `cdp serve` on the test database with the settings given (see serve_on)."""
    return partial(serve_on, database)

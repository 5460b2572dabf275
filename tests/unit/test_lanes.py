"""A lane's query chosen as a deadlock's victim is run again: a read changes nothing, and
the transaction it gave way to (a build swapping its tables in) has ended by then."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import Connection, create_engine
from sqlalchemy.exc import OperationalError

from cdp.runtime import service
from cdp.runtime.service import Lane


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def failing(times: int, sqlstate: str) -> tuple[list[int], object]:
    calls: list[int] = []

    def query(connection: Connection) -> str:
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("SELECT ...", None, DriverError(sqlstate))
        return "rows"

    return calls, query


def run(query: object) -> object:
    lane = Lane("reads", 1, timedelta(seconds=5), create_engine("sqlite://"))
    return asyncio.run(lane.query(query))  # type: ignore[arg-type]


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_query_that_gave_way_to_another_transaction_is_run_again(sqlstate: str) -> None:
    calls, query = failing(service.QUERY_ATTEMPTS - 1, sqlstate)
    assert run(query) == "rows"
    assert len(calls) == service.QUERY_ATTEMPTS


def test_a_query_that_keeps_giving_way_fails_after_its_attempts() -> None:
    calls, query = failing(service.QUERY_ATTEMPTS, "40P01")
    with pytest.raises(OperationalError):
        run(query)
    assert len(calls) == service.QUERY_ATTEMPTS


def test_any_other_error_is_not_run_again() -> None:
    calls, query = failing(1, "57014")  # a statement timeout: again would wait as long
    with pytest.raises(OperationalError):
        run(query)
    assert len(calls) == 1

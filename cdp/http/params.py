"""Query parameters that several endpoints share, and how their values are read."""

from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, NoReturn

from litestar import Request
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.params import QueryParameter

from cdp.log.webhook import EARLIEST_TIMESTAMP_MS, INT64_MAX
from cdp.times import milliseconds

Limit = Annotated[
    int, QueryParameter(ge=1, le=1000, description="How many items a page holds, 1 to 1000.")
]
After = Annotated[
    str | None,
    QueryParameter(description="Where the page starts: the `next` of the page before."),
]
Moment = Annotated[
    str | None,
    QueryParameter(
        description=(
            "ISO 8601 (`2026-05-01T09:30:00+03:00`; without a zone, UTC), a date "
            "(`2026-05-01`, its midnight UTC), or epoch milliseconds (`1777593600000`)."
        ),
    ),
]


def moment(name: str, value: str | None) -> int | None:
    """Milliseconds since the epoch of a since/until value; a 400 naming `name` if it is none."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 19:
        number = int(text)
        if number < EARLIEST_TIMESTAMP_MS:
            _refuse(name, f"{value} ms is before 2000-01-01: it looks like seconds, not ms")
        return min(number, INT64_MAX)
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        _refuse(name, f"must be ISO 8601, a date (YYYY-MM-DD) or epoch milliseconds, got {value!r}")
    return milliseconds(parsed)


def position(name: str, value: str | None) -> int | None:
    """A log position written as text (a header), None if not given; a 400 naming `name`
    unless it is digits alone, 0 to 2^63-1."""
    if value is None:
        return None
    if value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= INT64_MAX:
        return int(value)
    _refuse(name, f"must be a position in the log, an integer from 0 to 2^63-1, got {value!r}")


def _refuse(name: str, message: str) -> NoReturn:
    raise ValidationException(message, extra=[{"key": name, "message": message}])


def period(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """(since, until) in ms; a 400 if either is unreadable or since comes after until."""
    start, end = moment("since", since), moment("until", until)
    if start is not None and end is not None and start > end:
        _refuse("since", f"since ({since}) is after until ({until})")
    return start, end


def ours(handler: HTTPRouteHandler) -> bool:
    """Is this one of cdp's endpoints (not the OpenAPI pages or their assets)?"""
    return handler.fn.__module__.startswith("cdp.")


@cache
def query_names(handler: HTTPRouteHandler, path: frozenset[str]) -> dict[str, str]:
    """The query parameters a handler takes, as Litestar reads them (dependencies' too):
    {name in Python: name in the URL}. `path` names the route's path parameters."""
    model = handler.create_kwargs_model(path_parameters=dict.fromkeys(path))  # type: ignore[arg-type]
    return {
        parameter.field_name: parameter.field_alias for parameter in model.expected_query_params
    }


def request_query_names(request: Request[Any, Any, Any]) -> dict[str, str]:
    return query_names(request.route_handler, frozenset(request.path_params))


async def check(request: Request[Any, Any, Any]) -> None:
    """Refuse NUL characters, and query parameters the endpoint does not take or takes once.

    Async though it never waits: a plain function would be sent to a worker thread.

    No identifier cdp stores holds a NUL, and PostgreSQL cannot even compare one. An unknown
    parameter is most often a typo, and a repeated one a mistake: answering as if it were
    not there would answer a question nobody asked.
    """
    if not request.scope["query_string"] and "\x00" not in request.scope["path"]:
        return  # nothing to refuse: most requests, and every webhook
    problems = []
    if "\x00" in request.url.path:
        problems.append({"key": "path", "message": "must not contain a NUL character"})
    given = [name for name, _ in request.query_params.multi_items()]
    for name, value in request.query_params.multi_items():
        if "\x00" in value:
            problems.append({"key": name, "message": "must not contain a NUL character"})
    if ours(request.route_handler):
        known = set(request_query_names(request).values())
        takes = ", ".join(sorted(known)) or "none"
        for name in sorted(set(given) - known):
            message = f"unknown query parameter {name!r} (this endpoint takes: {takes})"
            problems.append({"key": name, "message": message})
        for name in sorted({name for name in given if given.count(name) > 1} & known):
            problems.append({"key": name, "message": "given more than once"})
    if problems:
        raise ValidationException("invalid request", extra=problems)

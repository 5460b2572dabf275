"""What a refused or failed request is answered, and the one line logged for it.

Every 4xx and 5xx is `{"detail", "errors"?}` and one log line with its reason. Log lines
never hold a phone number or a text in full: quoted values are cut short, digit runs masked.
"""

import logging
import re
from collections.abc import Callable
from typing import Any, Final

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_409_CONFLICT,
    HTTP_410_GONE,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cdp import db
from cdp.http.params import request_query_names
from cdp.log.webhook import (
    BodyTooLarge,
    Foreign,
    InvalidWebhook,
    MalformedBody,
    NotJSON,
    Suppressed,
)
from cdp.paging import BadCursor, BeingErased
from cdp.projections import builds
from cdp.runtime.service import Overloaded

logger = logging.getLogger("cdp.api")
AnyRequest = Request[Any, Any, Any]
Answer = Response[dict[str, object]]

# A quote left open runs to the end: no rescan from each quote, so redacting stays linear.
_QUOTED: Final = re.compile(
    r"""'[^'\\]*(?:\\.[^'\\]*)*(?:'|\\?\Z)|"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)""", re.DOTALL
)
_LOGGED: Final = 2000  # characters of a reason that reach the log
_DIGITS: Final = re.compile(r"\+?\d[\d\s().-]{4,}\d")
_SHOWN: Final = 24
_MISSING: Final = re.compile(r"Missing required \w+ parameter '([^']+)'")
# Query parameters whose values no log line shows: a secret, a customer's name.
_HIDDEN: Final = frozenset({"token", "name"})


def redact(text: str) -> str:
    """`text` with each quoted value cut short and its digit runs masked but the last two."""
    return _printable(_QUOTED.sub(lambda match: _mask(match.group()), text[:_LOGGED]))


def _printable(text: str) -> str:
    """No line breaks, NULs or terminal escapes from a request can reach the log as they are."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _mask(value: str) -> str:
    """A quoted value: digit runs masked, and cut short."""
    masked = _masked_digits(value)
    return masked if len(masked) <= _SHOWN else masked[: _SHOWN - 1] + "…" + masked[-1]


def _masked_digits(text: str) -> str:
    return _DIGITS.sub(lambda digits: "*" * (len(digits.group()) - 2) + digits.group()[-2:], text)


def problem(
    request: AnyRequest,
    status: int,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    cause: str | None = None,
    masked: bool = True,
) -> Answer:
    """The answer, logged on one line with its reason (`cause` if the answer says less),
    its quoted values masked (they may come from the request) unless not `masked`."""
    level = logging.WARNING if status >= 500 else logging.INFO
    reason = redact(cause or detail) if masked else _printable((cause or detail)[:_LOGGED])
    fields = {"method": request.method, "path": shown_path(request.url.path), "status": status}
    logger.log(
        level,
        "%s %s -> %d: %s",
        request.method,
        _target(request),
        status,
        reason,
        extra={"fields": {**fields, "reason": reason}},
    )
    content: dict[str, object] = {"detail": detail}
    if errors is not None:
        content["errors"] = errors
    return Response(content, status_code=status, headers=headers)


def _target(request: AnyRequest) -> str:
    """The path and query as a log line may show them: a phone-like id or a forged log line
    in the path is masked and escaped, every query value cut short and masked, a secret
    (`token`) or a customer's name (`name`) not shown at all."""
    query = "&".join(
        f"{_printable(key)}={'***' if key in _HIDDEN else _mask(repr(value))}"
        for key, value in request.query_params.multi_items()
    )
    return shown_path(request.url.path) + (f"?{query}" if query else "")


def shown_path(path: str) -> str:
    """A request's path as a log line may show it: a phone-like id masked, a forged log
    line escaped."""
    return _printable(_masked_digits(path))


def malformed(request: AnyRequest, error: MalformedBody) -> Answer:
    return problem(
        request, HTTP_400_BAD_REQUEST, str(error), [{"path": "body", "message": str(error)}]
    )


def too_large(request: AnyRequest, error: BodyTooLarge) -> Answer:
    """413, and the connection closed after it: the rest of the body is never read (kept
    open, the server would read and drop it to the end to take the next request)."""
    return problem(
        request, HTTP_413_REQUEST_ENTITY_TOO_LARGE, str(error), headers={"Connection": "close"}
    )


def not_json(request: AnyRequest, error: NotJSON) -> Answer:
    return problem(request, HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(error))


def suppressed(request: AnyRequest, error: Suppressed) -> Answer:
    return problem(request, HTTP_410_GONE, str(error))


def foreign(request: AnyRequest, error: Foreign) -> Answer:
    return problem(request, HTTP_409_CONFLICT, str(error))


def invalid(request: AnyRequest, error: InvalidWebhook) -> Answer:
    errors = [{"path": e.path, "message": e.message} for e in error.errors]
    return problem(request, HTTP_422_UNPROCESSABLE_ENTITY, str(error), errors)


def bad_parameters(request: AnyRequest, error: ValidationException) -> Answer:
    extra = error.extra if isinstance(error.extra, list) else []
    # Litestar names a parameter as the handler does; the client knows the name in the URL.
    names = request_query_names(request) if request.scope.get("route_handler") else {}
    errors = [
        {
            "path": names.get(str(item.get("key", "")), str(item.get("key", ""))),
            "message": str(item.get("message", "")),
        }
        for item in extra
        if isinstance(item, dict)
    ]
    if not errors and (missing := _MISSING.search(str(error.detail))):
        errors = [{"path": missing.group(1), "message": "is required"}]
    detail = "; ".join(f"{e['path']}: {e['message']}" for e in errors) or error.detail
    return problem(request, HTTP_400_BAD_REQUEST, f"invalid request: {detail}", errors)


def being_erased(request: AnyRequest, error: BeingErased) -> Answer:
    return problem(request, HTTP_409_CONFLICT, str(error))


def bad_cursor(request: AnyRequest, error: BadCursor) -> Answer:
    errors = [{"path": "after", "message": str(error)}]
    return problem(request, HTTP_400_BAD_REQUEST, f"invalid request: after: {error}", errors)


def http_error(request: AnyRequest, error: HTTPException) -> Answer:
    if error.detail == "client disconnected prematurely":  # Litestar's words; nobody to answer
        detail = "the client went away before it sent the whole body"
        return problem(request, HTTP_400_BAD_REQUEST, detail)
    return problem(request, error.status_code, error.detail, headers=error.headers)


def overloaded(request: AnyRequest, error: Overloaded | PoolTimeout) -> Answer:
    return problem(request, HTTP_503_SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "1"})


def building(request: AnyRequest, error: builds.BuildRunning) -> Answer:
    return problem(request, HTTP_409_CONFLICT, str(error))


def database_error(request: AnyRequest, error: DBAPIError) -> Answer:
    """503 with Retry-After when the database is out of reach or kept the request waiting
    (the driver's message names hosts, users and databases: for the log, not the answer);
    500 when it refused the statement itself (too many parameters, a constraint, a bug):
    asking again would fail again, so it must not pass for an outage."""
    reason = _unavailable(error)
    if reason is None:
        return internal(request, error, f"internal server error: {_refused(error)}")
    cause = f"database unavailable: {type(error.orig).__name__}: {error.orig}".strip()
    # Not masked: the driver's words for an outage name the server as a person knows it
    # ("127.0.0.2", port 5433) and hold no value of a statement.
    return problem(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        f"database unavailable: {reason}",
        headers={"Retry-After": "5"},
        cause=" ".join(cause.split()),
        masked=False,
    )


# SQLite's codes for a lock held by another connection.
_LOCKED: Final = ("SQLITE_BUSY", "SQLITE_LOCKED")
# PostgreSQL's for a server shutting down, crashed, or starting up (a lost or refused
# connection is class 08, or an error of the driver's own, with no code).
_SHUTDOWN: Final = ("57P01", "57P02", "57P03")


def outage(error: Overloaded | SQLAlchemyError) -> str:
    """What an answer says of a database that failed a request, in words that name no host,
    user, file or value."""
    if isinstance(error, Overloaded | PoolTimeout):
        return str(error)
    if isinstance(error, DBAPIError) and (reason := _unavailable(error)) is not None:
        return f"database unavailable: {reason}"
    return _refused(error)


def refused(error: Overloaded | SQLAlchemyError) -> bool:
    """Did the database refuse the statement itself (asking again would fail again), rather
    than being out of reach or keeping it waiting? What outage() then says is _refused()'s."""
    if isinstance(error, Overloaded | PoolTimeout):
        return False
    return not isinstance(error, DBAPIError) or _unavailable(error) is None


def _refused(error: SQLAlchemyError) -> str:
    """A failure that is no outage, by the driver's kind of error, not its words."""
    kind = type(getattr(error, "orig", None) or error).__name__
    return f"the database refused a statement ({kind}); the server's log says why"


def _unavailable(error: DBAPIError) -> str | None:
    """What is wrong with the database, in words that name no host, user or file; None
    when it is no outage, nor a wait too long, but a statement it refused."""
    driver = error.orig
    sqlite_code = getattr(driver, "sqlite_errorname", None) or ""
    state = getattr(driver, "sqlstate", None) or ""  # psycopg's; None for one of its own
    if sqlite_code in _LOCKED:
        return "another process held its write lock longer than CDP_DATABASE_STATEMENT_TIMEOUT"
    if state == "57014":
        return "a statement ran longer than CDP_DATABASE_STATEMENT_TIMEOUT"
    if state == "55P03":
        return "another transaction held a lock it needed for too long"
    if state in db.GAVE_WAY:
        return "it gave way to another transaction at the same time"
    if state[:2] == "53" or sqlite_code == "SQLITE_FULL" or sqlite_code.startswith("SQLITE_IOERR"):
        return "it ran out of room or resources (disk, memory or connections)"
    if (
        error.connection_invalidated
        or isinstance(error, InterfaceError)
        # No statement: it failed as it connected.
        or error.statement is None
        or sqlite_code == "SQLITE_CANTOPEN"
        or state[:2] == "08"
        or state in _SHUTDOWN
    ):
        return "it cannot be reached"
    return None


def internal(
    request: AnyRequest, error: Exception, detail: str = "internal server error"
) -> Answer:
    fields = {"method": request.method, "path": shown_path(request.url.path)}
    logger.error(
        "%s %s failed",
        request.method,
        _target(request),
        exc_info=error,
        extra={"fields": {**fields, "exception": type(error).__name__}},
    )
    return problem(request, HTTP_500_INTERNAL_SERVER_ERROR, detail)


HANDLERS: Final[dict[type[Exception], Callable[..., Answer]]] = {
    MalformedBody: malformed,
    InvalidWebhook: invalid,
    BodyTooLarge: too_large,
    NotJSON: not_json,
    Suppressed: suppressed,
    Foreign: foreign,
    ValidationException: bad_parameters,
    BadCursor: bad_cursor,
    BeingErased: being_erased,
    HTTPException: http_error,
    Overloaded: overloaded,
    builds.BuildRunning: building,
    PoolTimeout: overloaded,
    DBAPIError: database_error,
    Exception: internal,
}

"""Who may use the console: the API's tokens, given once in a form and kept in a cookie.

The token itself is the cookie (secure, HttpOnly, SameSite=Lax, for /console only), so a
token revoked with `cdp token` ends every console session that used it within a second,
as it ends API calls. Each form that changes something carries a CSRF value that must
equal the one in another cookie of the browser's (a double-submitted cookie): a page of
another site can make the browser post, but cannot read the value, and the browser says
where the post comes from (Sec-Fetch-Site).
"""

import hmac
import secrets
from typing import Any, Final

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.status_codes import HTTP_401_UNAUTHORIZED

from cdp.access import auth
from cdp.access.credentials import Caller, Role

PATH: Final = "/console"
TOKEN_COOKIE: Final = "cdp_console"
CSRF_COOKIE: Final = "cdp_csrf"
CSRF_FIELD: Final = "csrf"
# A token is 50 characters; anything much longer is no token, and is not looked up.
_MAX_TOKEN: Final = 200


class SignInNeeded(HTTPException):
    """No token, or one no longer valid: the console answers with its sign-in page."""

    status_code = HTTP_401_UNAUTHORIZED


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], role: Role) -> Caller | None:
    """Who the console's cookie says this is, if they may do what `role` may; None if the
    store is open. SignInNeeded if there is no valid token (only a wrong one counts
    against the address's failed attempts), 403 or 429 as for the API."""
    gate = auth.gate(connection)
    if await gate.open():
        return None
    token = connection.cookies.get(TOKEN_COOKIE)
    if not token or len(token) > _MAX_TOKEN:
        raise SignInNeeded("sign in with a token")
    try:
        return await gate.caller(connection, role, token)
    except HTTPException as error:
        if error.status_code == HTTP_401_UNAUTHORIZED:
            raise SignInNeeded("the token is no longer valid") from None
        raise


async def still_signed_in(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Would the console's cookie still let this connection read? Asked again and again by
    a request that lasts (a live list), so that a token revoked meanwhile ends it; counted
    against no rate limit, as signed_in() is when the request comes."""
    gate = auth.gate(connection)
    if await gate.open():
        return True
    token = connection.cookies.get(TOKEN_COOKIE)
    if not token or len(token) > _MAX_TOKEN:
        return False
    return (await gate.keys.current()).caller(token) is not None


async def reader(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: signed in with a read or admin token (or the store is open)."""
    connection.state.caller = await signed_in(connection, "read")


async def admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: signed in with an admin token (or the store is open). Who it is is known
    even when refused, so that the page saying so can offer to sign out."""
    connection.state.caller = await signed_in(connection, "read")
    if connection.state.caller is not None:
        auth.permit(connection.state.caller, "admin")


def caller(request: Request[Any, Any, Any]) -> Caller | None:
    """Who the guard found this request comes from; None on an open store or a public page."""
    found: Caller | None = getattr(request.state, "caller", None)
    return found


def keeps_cookies(request: Request[Any, Any, Any]) -> bool:
    """Will a browser keep the console's Secure cookies from this request: over HTTPS (as a
    TLS proxy forwards it, see cdp serve --forwarded-allow-ips), or from this machine?"""
    host = (request.url.hostname or "").strip("[]")
    return request.url.scheme == "https" or host in ("localhost", "127.0.0.1", "::1")


def token_cookie(token: str) -> Cookie:
    return Cookie(
        key=TOKEN_COOKIE, value=token, path=PATH, secure=True, httponly=True, samesite="lax"
    )


def signed_out() -> Cookie:
    return Cookie(
        key=TOKEN_COOKIE,
        value="",
        path=PATH,
        secure=True,
        httponly=True,
        samesite="lax",
        max_age=0,
    )


def csrf_value(request: Request[Any, Any, Any]) -> tuple[str, Cookie | None]:
    """The CSRF value this request's forms carry, and the cookie to set if it is new."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(value) <= 100:
        return value, None
    value = secrets.token_urlsafe(32)
    cookie = Cookie(
        key=CSRF_COOKIE, value=value, path=PATH, secure=True, httponly=True, samesite="lax"
    )
    return value, cookie


def check_form(request: Request[Any, Any, Any], form: dict[str, Any]) -> None:
    """403 unless a form that changes something came from a page of the console: its CSRF
    field equals the browser's CSRF cookie, and the browser does not say it comes from
    another origin (a sibling subdomain could plant the cookie, not the header)."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    given = form.get(CSRF_FIELD)
    same = isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())
    # A browser says where a request comes from: only the console's own pages may post.
    elsewhere = request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
    if not expected or not same or elsewhere:
        raise PermissionDeniedException(
            "this form did not come from a page of the console, or it expired: reload the "
            "page and send it again"
        )

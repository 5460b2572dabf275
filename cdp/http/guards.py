"""What a web browser can make the service do, and what it may do with the answers.

A browser is in the reach of every web page its user opens, and those pages can aim it at
this service: at 127.0.0.1, at a name they control that they point at this server (DNS
rebinding), with forms and fetches that carry no token. So, before any route:

- the Host a request is addressed to must be one the service answers for: the names of
  the address it listens on (an IP address, and on loopback "localhost" too), and those
  of CDP_ALLOWED_HOSTS. Any other is 421: a page of attacker.example whose name now points
  here gets nothing. A request with no Host, or more than one, is 400;
- a request that changes something (any method but GET, HEAD and OPTIONS) that a browser
  says comes from another site (Sec-Fetch-Site: cross-site or same-site), or from a page of
  another origin (Origin; "null" too, unless the browser says same-origin), is 403, unless
  it carries Authorization: Bearer, which no page can make a browser send to another
  origin (that needs CORS, which cdp never grants).
  Servers (Fasttrack, scripts) send neither header and pass;
- every answer, of a route or not, an error or a static file, carries headers that keep
  it out of other sites' frames, scripts and caches (HEADERS), and a Content-Security-Policy:
  none at all for the API, what they need for the schema's pages; the console sets its own.
"""

import ipaddress
import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final

from litestar import Request
from litestar.enums import ScopeType
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_421_MISDIRECTED_REQUEST,
)
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from cdp.http import problems
from cdp.settings import ANY_HOST, Settings, host_and_port

logger = logging.getLogger("cdp.api")

# Requests that change nothing, which any page may make a browser send (and read nothing of).
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES: Final = ("localhost", "127.0.0.1", "[::1]")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_BEARER: Final = b"bearer "

# The API's answers are data, never a page: nothing runs, loads or frames them.
API_POLICY: Final = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# The schema's pages (Swagger UI, Redoc): their scripts and styles come from cdp itself;
# both set styles from script, Redoc searches in a worker it makes from a blob, and Swagger
# UI's "Try it out" calls the API.
DOCS_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PATH: Final = "/schema"
# Files that are the same for everyone, which browsers may keep (they say how long).
STATIC_PATHS: Final = ("/schema/assets/", "/console/static/")
# Every answer: never framed, sniffed, named in a Referer, or read by another origin's page.
HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_POLICY: Final = b"content-security-policy"
_API_POLICY: Final = API_POLICY.encode()
_DOCS_POLICY: Final = DOCS_POLICY.encode()
_CACHE: Final = b"cache-control"
_NO_STORE: Final = b"no-store"
_OURS: Final = frozenset(name for name, _ in HEADERS)
_DOCS_PAGES: Final = f"{DOCS_PATH}/"


class Hosts:
    """The names a request may be addressed to: those of the address the server listens on
    (as the ASGI server says for each connection: scope["server"]), and those given."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.any = ANY_HOST in allowed
        self.given: set[tuple[str, int | None]] = set()
        for entry in allowed:
            parsed = host_and_port(entry) if entry != ANY_HOST else None
            if parsed is not None:
                self.given.add(parsed)

    def admits(self, name: str, port: int | None, server: Any) -> bool:
        """May a request for `name` (and `port`, if it named one) be answered by a server
        whose address is `server`?"""
        if self.any or (name, None) in self.given or (name, port) in self.given:
            return True
        return _listening_name(name, server)

    def names(self, origin: str) -> tuple[str, int | None] | None:
        """The host and port of an Origin (scheme://host[:port]), or None if it is none."""
        scheme, separator, rest = origin.strip().lower().partition("://")
        if not separator or scheme not in _DEFAULT_PORTS or "/" in rest or "@" in rest:
            return None
        parsed = host_and_port(rest)
        if parsed is None:
            return None
        name, port = parsed
        return name, _DEFAULT_PORTS[scheme] if port is None else port

    def same_origin(self, origin: str, host: tuple[str, int | None]) -> bool:
        """Is `origin` this server as the request names it (Host), or one of the names
        given (behind a proxy that passes on another Host)? An opaque origin ("null": a
        sandboxed frame, a file) is no origin of ours."""
        named = self.names(origin)
        if named is None:
            return False
        name, port = named
        if name == host[0] and port == (host[1] or _port_of(origin)):
            return True
        return (name, None) in self.given or (name, port) in self.given


def _port_of(origin: str) -> int:
    return _DEFAULT_PORTS.get(origin.strip().lower().partition("://")[0], 80)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, an IPv4-mapped IPv6 address as the IPv4 address it maps."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _listening_name(name: str, server: Any) -> bool:
    """Is `name` a name of the address the server listens on, whatever the port (DNS
    rebinding changes the name, never the port)? An IP address is: no page can point it
    elsewhere. So is "localhost" on loopback: browsers never ask DNS for it. A server that
    says no address (a Unix socket) is taken to be reached over loopback."""
    listening = server[0] if isinstance(server, list | tuple) and server else None
    if not isinstance(listening, str) or "/" in listening:
        listening = "127.0.0.1"
    own, asked = _address(listening), _address(name)
    if own is None:  # a server that says it is a name (the test client's)
        return name == listening.lower() or (listening.lower() == "localhost" and _loopback(name))
    if own.is_loopback:
        return _loopback(name)
    if own.is_unspecified:  # a server that says 0.0.0.0, not the address asked for
        return asked is not None or name == "localhost"
    return asked == own


def _loopback(name: str) -> bool:
    address = _address(name)
    return name == "localhost" if address is None else address.is_loopback


def shown_names(server: Any) -> str:
    """The names a request may use by default, as the 421 lists them."""
    listening = server[0] if isinstance(server, list | tuple) and server else None
    if not isinstance(listening, str) or "/" in listening:
        return ", ".join(LOOPBACK_NAMES)
    own = _address(listening)
    if own is None:
        return listening
    if own.is_loopback:
        return ", ".join(LOOPBACK_NAMES)
    if own.is_unspecified:
        return "this machine's IP addresses, localhost"
    return f"[{own}]" if own.version == 6 else str(own)


class Guard:
    """An ASGI app around `app` that refuses what a browser must not make it do (see the
    module's docstring), and gives every answer the headers that protect it."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.hosts = app, Hosts(settings.allowed_hosts)
        # Whether a Host is served, by Host and server address: the same few come again
        # and again, and a hostile client's many new ones only push older ones out.
        self.served = lru_cache(maxsize=1024)(self._served)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        answer = self._refusal(scope, _Headers(scope["headers"]))

        async def protected(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _protected(path, message.get("headers", []))}
            await send(message)

        if answer is None:
            await self.app(scope, receive, protected)
            return
        status, detail = answer
        request: Request[Any, Any, Any] = Request(scope, receive)
        response = problems.problem(request, status, detail)
        await response.to_asgi_response(app=None, request=request)(scope, receive, protected)

    def _served(self, host: str, server: Any) -> tuple[str, int | None] | None:
        """The name and port of `host` (a Host header) if a server at `server` answers for
        it, else None."""
        parsed = host_and_port(host)
        if parsed is None or not self.hosts.admits(parsed[0], parsed[1], server):
            return None
        return parsed

    def _refusal(self, scope: HTTPScope, headers: "_Headers") -> tuple[int, str] | None:
        """The status and detail of the refusal of this request, if it is refused."""
        if len(headers.hosts) != 1:
            return HTTP_400_BAD_REQUEST, (
                "the request names no host (Host), or more than one: HTTP/1.1 needs one"
            )
        named = headers.hosts[0]
        server = scope.get("server")
        host = self.served(named, tuple(server) if isinstance(server, list) else server)
        if host is None:
            return HTTP_421_MISDIRECTED_REQUEST, (
                f"this server does not answer for the host {named[:100]!r}: it answers for "
                f"the names of the address it listens on ({shown_names(server)}) and those "
                "of CDP_ALLOWED_HOSTS. Set CDP_ALLOWED_HOSTS to the names clients use (behind "
                "a proxy, the Host it passes on)"
            )
        if scope["method"] in SAFE_METHODS or headers.bearer:
            return None
        site = headers.site
        if site is not None and site.strip().lower() in ("cross-site", "same-site"):
            return HTTP_403_FORBIDDEN, (
                f"refused: the browser says this {scope['method']} comes from a page of "
                f"another site (Sec-Fetch-Site: {site.strip().lower()}), and a web page may "
                "not change the store. Programs send Authorization: Bearer <token>"
            )
        origin = headers.origin
        # A page whose Referrer-Policy is no-referrer (the console's) posts "Origin: null"
        # even to its own origin; then the browser's Sec-Fetch-Site says whose it is.
        masked = origin == "null" and site is not None and site.strip().lower() == "same-origin"
        if origin is not None and not masked and not self.hosts.same_origin(origin, host):
            return HTTP_403_FORBIDDEN, (
                f"refused: this {scope['method']} comes from a page of {origin[:100]!r} "
                "(Origin), not of this server, and a web page may not change the store. "
                "Programs send Authorization: Bearer <token>; behind a proxy, add its name "
                "to CDP_ALLOWED_HOSTS"
            )
        return None


class _Headers:
    """What the guard reads of a request's headers, in one pass over them: every Host, the
    first Sec-Fetch-Site and Origin, and whether it carries Authorization: Bearer with
    something after it (whether that is a valid token is the routes' to say)."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.hosts: list[str] = []
        self.site: str | None = None
        self.origin: str | None = None
        self.bearer = False
        for key, value in raw:
            name = key.lower()
            if name == b"host":
                self.hosts.append(value.decode("latin-1"))
            elif name == b"sec-fetch-site" and self.site is None:
                self.site = value.decode("latin-1")
            elif name == b"origin" and self.origin is None:
                self.origin = value.decode("latin-1")
            elif name == b"authorization":
                scheme, token = value[: len(_BEARER)], value[len(_BEARER) :]
                self.bearer = self.bearer or (scheme.lower() == _BEARER and bool(token.strip()))


def _protected(path: str, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The answer's headers, with those of HEADERS, a policy and no-store (except for
    static files) that it does not set itself."""
    given = list(headers)
    present = set()
    page = False
    for key, value in given:
        name = key.lower()
        present.add(name)
        page = page or (name == b"content-type" and b"html" in value)
    if present.isdisjoint(_OURS):  # most answers: the API's
        given += HEADERS
    else:
        given += [header for header in HEADERS if header[0] not in present]
    if _POLICY not in present:
        docs = page and (path == DOCS_PATH or path.startswith(_DOCS_PAGES))
        given.append((_POLICY, _DOCS_POLICY if docs else _API_POLICY))
    if _CACHE not in present and not path.startswith(STATIC_PATHS):
        given.append((_CACHE, _NO_STORE))
    return given

"""How console pages are rendered: the Jinja2 templates, and what every page is given."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import anyio
import jinja2
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template import TemplateConfig
from markupsafe import Markup, escape

from cdp.console import access
from cdp.console.words import Words, language
from cdp.times import iso

TEMPLATES: Final = Path(__file__).parent / "templates"
# Every console page: it holds personal data, runs only its own scripts and styles, and is
# never framed, cached or named in a link's Referer.
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def templates(zone: ZoneInfo) -> TemplateConfig[JinjaTemplateEngine]:
    """The console's templates: autoescaped, and strict about names they do not know."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.do"],
    )
    environment.globals |= {"moment": lambda at: moment(at, zone), "zone": str(zone)}
    environment.filters |= {"number": number}
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


async def page(
    request: Request[Any, Any, Any], name: str, status_code: int = 200, **context: Any
) -> Response[str]:
    """Template `name` rendered in a worker thread (a page can hold megabytes of escaped
    text), given what every page is (see _given)."""
    given, cookies = _given(request, context)
    engine = request.app.template_engine
    assert engine is not None  # create_app gives the app the console's templates
    html = await anyio.to_thread.run_sync(lambda: engine.get_template(name).render(**given))
    return Response(
        html, media_type=MediaType.HTML, status_code=status_code, headers=HEADERS, cookies=cookies
    )


def error_page(request: Request[Any, Any, Any], status_code: int, detail: str) -> Template:
    """The page of an error, rendered as the answer is sent: an exception handler cannot
    wait, and the page is small."""
    given, cookies = _given(request, {"detail": detail})
    return Template(
        template_name="error.html",
        context=given,
        status_code=status_code,
        headers=HEADERS,
        cookies=cookies,
    )


def _given(
    request: Request[Any, Any, Any], context: dict[str, Any]
) -> tuple[dict[str, Any], list[Cookie]]:
    """`context`, with the words of the browser's language, who is signed in, and the value
    its forms must carry (see access.check_form); and the CSRF cookie, if it is new."""
    words = words_of(request)
    csrf, cookie = access.csrf_value(request)
    given = context | {
        "t": words,
        "lang": words.language,
        "caller": access.caller(request),
        "csrf": csrf,
        "duration": lambda seconds: duration(seconds, words),
        "path": request.url.path,
    }
    return given, [cookie] if cookie else []


def words_of(request: Request[Any, Any, Any]) -> Words:
    """The words of the language the browser prefers."""
    return Words(language(request.headers.get("accept-language")))


def moment(at: datetime | None, zone: ZoneInfo) -> Markup:
    """A time in the console's zone, to the second, with its UTC time on hover."""
    if at is None:
        return Markup("")
    local = at.astimezone(zone)
    shown = local.strftime("%Y-%m-%d %H:%M:%S")
    utc = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso(at), utc, shown)


def duration(seconds: float | None, words: Words) -> str:
    """A length of time in its largest two units, the second left out when 0: "3 min 5 s",
    "2 h 10 min", "1 h"."""
    if seconds is None:
        return "—"
    left = timedelta(seconds=round(seconds))
    parts = [
        (left.days, words("days_short")),
        (left.seconds // 3600, words("hours_short")),
        (left.seconds // 60 % 60, words("minutes_short")),
        (left.seconds % 60, words("seconds_short")),
    ]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = parts[:2]
    if len(shown) == 2 and shown[1][0] == 0:
        shown.pop()
    return " ".join(f"{value} {unit}" for value, unit in shown)


def number(value: int) -> Markup:
    """An integer with thin spaces between thousands, as both languages read it."""
    return escape(f"{value:,}".replace(",", "\u202f"))

"""Every setting of the service, read from CDP_* environment variables."""

import importlib.util
import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AfterValidator, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from cdp.privacy.keyfile import default_path

_URL_EXAMPLES: Final = "sqlite:///./cdp.db or postgresql+psycopg://user@host/database"


def _duration(value: object) -> object:
    """A bare number is seconds; ISO 8601 ("PT24H") and "HH:MM:SS" are left to pydantic."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip()):
        try:
            return timedelta(seconds=float(value))
        except ValueError:
            return value
        except OverflowError:
            raise ValueError(f"{value} seconds is out of range") from None
    return value


def _between(low: timedelta, high: timedelta) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise ValueError(
                f"must be from {_seconds(low)} to {_seconds(high)} seconds, got {_seconds(value)}"
            )
        return value

    return AfterValidator(check)


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():.15g}"


_SECONDS: Final = BeforeValidator(_duration)


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


ANY_HOST: Final = "*"
# A name as a client writes it in Host: letters, digits, hyphens and dots (IDNs as punycode).
_NAME: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?")


def host_and_port(text: str) -> tuple[str, int | None] | None:
    """A Host header's name (lowercased, without a trailing dot; an IPv6 address without
    its brackets) and port, or None if it is no host: a URL, a path, a bad port."""
    text = text.strip().lower()
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        try:
            name = str(ipaddress.IPv6Address(address))
        except ValueError:
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, after = text.partition(":")
        port_text = after if colon else None
        name = name.removesuffix(".")
        if not _NAME.fullmatch(name):
            return None
    if port_text is None:
        return name, None
    if not (port_text.isascii() and port_text.isdigit() and 0 < len(port_text) <= 5):
        return None
    port = int(port_text)
    return (name, port) if port <= 65535 else None


def _hosts(value: object) -> object:
    """CDP_ALLOWED_HOSTS: comma-separated names (or a sequence of them), each as a client
    writes it in Host; each is checked, and written one way."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        return value
    hosts = []
    for entry in (str(part).strip() for part in value):
        if not entry:
            continue
        if entry == ANY_HOST:
            hosts.append(entry)
            continue
        parsed = host_and_port(entry)
        if parsed is None:
            raise ValueError(
                f"{entry!r} is not a host name as clients write it in Host: write e.g. "
                "cdp.example.com or cdp.example.com:8443 (no scheme, no path), "
                "comma-separated, or * for any"
            )
        name, port = parsed
        shown = f"[{name}]" if ":" in name else name
        hosts.append(shown if port is None else f"{shown}:{port}")
    return tuple(hosts)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDP_", frozen=True)

    database_url: str = "sqlite:///./cdp.db"
    session_idle_timeout: Annotated[
        timedelta, _SECONDS, _between(timedelta(seconds=1), timedelta(days=366))
    ] = timedelta(hours=24)
    session_open_window: Annotated[
        timedelta, _SECONDS, _between(timedelta(milliseconds=1), timedelta(hours=1))
    ] = timedelta(seconds=5)
    phone_region: str = "RU"
    max_clock_skew: Annotated[timedelta, _SECONDS, _between(timedelta(0), timedelta(days=7))] = (
        timedelta(hours=1)
    )
    database_pool_size: int = Field(default=10, ge=5, le=500)
    database_pool_timeout: Annotated[
        timedelta, _SECONDS, _between(timedelta(0), timedelta(minutes=10))
    ] = timedelta(seconds=5)
    database_connect_timeout: Annotated[
        timedelta, _SECONDS, _between(timedelta(seconds=1), timedelta(minutes=10))
    ] = timedelta(seconds=5)
    database_statement_timeout: Annotated[
        timedelta, _SECONDS, _between(timedelta(seconds=1), timedelta(days=1))
    ] = timedelta(seconds=30)
    rejected_retention: Annotated[
        timedelta, _SECONDS, _between(timedelta(hours=1), timedelta(days=3660))
    ] = timedelta(days=30)
    max_body_size: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Requests a second (0: no limit): per source, per token, and wrong credentials per address.
    webhook_rate_limit: float = Field(default=1000, ge=0)
    read_rate_limit: float = Field(default=100, ge=0)
    failed_auth_rate_limit: float = Field(default=1, ge=0)
    # Where the keys that seal personal data live (see cdp.privacy.keystore); see keystore().
    keystore_url: str | None = None
    # The file of the keys that wrap those keys, outside every database (see cdp.privacy.keyfile);
    # see key_path().
    key_file: Path | None = None
    # How SQLite (the store and a keystore of its own) makes a commit durable: see
    # cdp.db.SYNCHRONOUS. "full": a webhook answered survives a power cut.
    sqlite_synchronous: Annotated[Literal["full", "normal"], BeforeValidator(_lower)] = "full"
    # How cdp serve writes its log: lines of text, or JSON lines (see cdp.runtime.serverlog).
    log_format: Literal["text", "json"] = "text"
    # GET /events/stream: streams open at once per process, in all and per read token; the
    # events each holds for a client that reads slower than they come; how often the streams
    # look for events another process logged; how long one stays silent before a comment.
    max_streams: int = Field(default=100, ge=1, le=100_000)
    max_streams_per_token: int = Field(default=20, ge=1, le=100_000)
    stream_buffer: int = Field(default=1000, ge=100, le=100_000)
    stream_poll_interval: Annotated[
        timedelta, _SECONDS, _between(timedelta(milliseconds=10), timedelta(minutes=1))
    ] = timedelta(milliseconds=500)
    stream_heartbeat: Annotated[
        timedelta, _SECONDS, _between(timedelta(seconds=1), timedelta(hours=1))
    ] = timedelta(seconds=15)

    # The names requests may be addressed to (their Host), besides those of the address the
    # server listens on: see cdp.http.guards. "*" takes any, for a proxy that checks Host.
    allowed_hosts: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_hosts)] = ()

    # What cdp serve takes from a connection before the API sees a request (see cdp.runtime.server):
    # connections open at once per process, the size of a request's line and headers, the
    # time they and then the body may take, and how long an idle connection is kept.
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    max_header_size: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    header_timeout: Annotated[
        timedelta, _SECONDS, _between(timedelta(milliseconds=100), timedelta(hours=1))
    ] = timedelta(seconds=10)
    body_timeout: Annotated[
        timedelta, _SECONDS, _between(timedelta(milliseconds=100), timedelta(hours=1))
    ] = timedelta(seconds=30)
    keep_alive_timeout: Annotated[
        timedelta, _SECONDS, _between(timedelta(seconds=1), timedelta(hours=1))
    ] = timedelta(seconds=5)

    # The zone the console shows times in (with UTC on hover), and the reports count their
    # hours, days, weeks and months in: an IANA name.
    timezone: str = "Europe/Moscow"

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        return database_url(value).render_as_string(hide_password=False)

    @field_validator("keystore_url")
    @classmethod
    def _keystore(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return database_url(value).render_as_string(hide_password=False)

    def keystore(self) -> str | None:
        """The keystore's URL, None for the main database: CDP_KEYSTORE_URL, or by default
        a file beside a SQLite database (cdp.db: cdp-keys.db), so that a copy of one holds
        no key; on PostgreSQL, the main database."""
        if self.keystore_url is not None:
            return None if self.keystore_url == self.database_url else self.keystore_url
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or url.database is None:
            return None
        path = Path(url.database)
        beside = url.set(database=str(path.with_name(f"{path.stem}-keys{path.suffix}")))
        return beside.render_as_string(hide_password=False)

    @field_validator("key_file", mode="before")
    @classmethod
    def _key_file(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def key_path(self) -> Path | None:
        """The key file: CDP_KEY_FILE, or by default beside a SQLite database (cdp.db:
        cdp.kek), for PostgreSQL in the user's state directory (see keyfile.default_path)."""
        if self.key_file is not None:
            return self.key_file
        return default_path(self.database_url)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone name (e.g. Europe/Moscow, Asia/Almaty, UTC)"
            ) from None
        return value

    def zone(self) -> ZoneInfo:
        """The console's and the reports' time zone."""
        return ZoneInfo(self.timezone)

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region code phonenumbers knows (e.g. RU, KZ)")
        return region


def database_url(value: str) -> URL:
    """The URL of a database cdp can use; ValueError saying what is wrong and what to do."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL; write e.g. {_URL_EXAMPLES}") from None
    scheme = url.drivername
    if scheme in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
        if scheme == "postgres":
            raise ValueError(
                f"the scheme postgres:// is not understood; write {url.drivername}://..."
            )
    if url.drivername == "postgresql+psycopg":
        if importlib.util.find_spec("psycopg") is None:
            raise ValueError(
                "the PostgreSQL driver is not installed: install it with pip install "
                "'psycopg[binary]' (from a checkout of cdp: pip install -e '.[postgresql]')"
            )
    elif url.drivername in ("sqlite", "sqlite+pysqlite"):
        if url.database in (None, "", ":memory:"):
            raise ValueError("SQLite needs a file: write e.g. sqlite:///./cdp.db")
    else:
        raise ValueError(f"cdp cannot use {scheme}:// databases; write e.g. {_URL_EXAMPLES}")
    return url

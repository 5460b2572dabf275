"""The `cdp` command group, and what its commands share: settings, the database, the
keystore, errors."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cdp import DISTRIBUTION, db, upgrades
from cdp.access.credentials import CredentialError
from cdp.privacy import erasure
from cdp.privacy.keyfile import KeyFileError
from cdp.privacy.keystore import KeyFileMismatch, Keystore
from cdp.projections import registry, runner
from cdp.settings import Settings

T = TypeVar("T")


class SettingsError(click.ClickException):
    """A setting that cannot work: exit status 2, as for any other misuse."""

    exit_code = 2


class _Group(click.Group):
    def invoke(self, context: click.Context) -> object:
        try:
            return super().invoke(context)
        except (DBAPIError, PoolTimeout) as error:
            url = context.obj.database_url if context.obj else None
            named = f" {sqlite_file(url) or shown_url(url)}" if url else ""
            raise click.ClickException(
                f"cannot use the database{named}: {reason_of(error)}"
            ) from None


@click.group(cls=_Group)
@click.version_option(package_name=DISTRIBUTION, prog_name="cdp", message="%(prog)s %(version)s")
@click.pass_context
def main(context: click.Context) -> None:
    """An event-sourced customer-data store for Fasttrack chat-center webhooks.

    The database is CDP_DATABASE_URL (default: the SQLite file ./cdp.db).
    """
    try:
        context.obj = Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"CDP_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def connect(settings: Settings, *, existing: bool = False) -> Engine:
    """An engine that is disposed of when the command ends.

    With `existing`, a SQLite file that is not there is an error, not a new empty file. A
    SQLite file that cannot be opened or made is an error naming it and saying why.
    """
    path = sqlite_file(settings.database_url)
    if path is not None:
        if existing and not path.exists():
            raise click.ClickException(
                f"no database at {path}: run cdp where it is, or point "
                "CDP_DATABASE_URL at it (cdp migrate or cdp import create a new one)"
            )
        problem = _file_problem(path)
        if problem is not None:
            raise click.ClickException(
                f"cannot use the database {path}: {problem} (CDP_DATABASE_URL is "
                f"{shown_url(settings.database_url)})"
            )
    engine = db.engine_of(settings, connections=2)
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite database's file; None for another database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(os.path.abspath(parsed.database))


def database_named(url: str) -> str:
    """A database as a person finds it: a SQLite file by its absolute path, another by its
    URL without the password (its kind, user, host and database)."""
    path = sqlite_file(url)
    return f"the SQLite file {path}" if path is not None else shown_url(url)


def new_database(settings: Settings) -> Path | None:
    """The SQLite file a command would make, empty, if it went on: None if it is there, or
    the database is not SQLite."""
    path = sqlite_file(settings.database_url)
    return path if path is not None and not path.exists() else None


def _file_problem(path: Path) -> str | None:
    """Why SQLite could not open the database file at `path`, or make it there; None if
    it may."""
    if path.is_dir():
        return "it is a folder, not a database file"
    folder = path.parent
    if not folder.exists():
        return f"the folder {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if path.exists():
        if not os.access(path, os.R_OK):
            return "this user may not read it"
    elif not os.access(folder, os.W_OK | os.X_OK):
        return f"the file is not there, and this user may not make it in the folder {folder}"
    return None


def engine_for(
    settings: Settings, *, migrate: bool = False, existing: bool = False, announce: bool = True
) -> Engine:
    """An engine on a schema at the latest migration; SQLite is brought there by itself.

    A SQLite file that was not there is made, and said so on stderr (unless not
    `announce`): a command run in another folder than meant would otherwise go on, quietly,
    with a new empty store."""
    new = None if existing else new_database(settings)
    engine = connect(settings, existing=existing)
    current, latest = upgrades.pending(engine)
    if current != latest:
        if migrate or db.dialect(engine) == "sqlite":
            upgrade_schema(settings, engine)
        else:
            raise click.ClickException(
                f"the database schema is at revision {current or '(none)'}, this cdp needs "
                f"{latest}: run `cdp migrate` first (or `cdp serve --migrate`)"
            )
    if new is not None and announce:
        click.echo(made_new(new), err=True)
    return engine


def made_new(path: Path, *, loud: bool = False) -> str:
    """What to say of a SQLite file just made: in capitals in a server's log, among its
    other lines."""
    said = "created a new, empty database"
    return (
        f"{said.upper() if loud else said} at {path}: if you meant another, run cdp in its "
        "folder or point CDP_DATABASE_URL at it"
    )


def reach_keystore(settings: Settings) -> str:
    """Where the keys are, once the keystore has answered as the database did: "the main
    database", or a database of its own, named without its password. An error naming it
    when it cannot be reached: a server without its keys would refuse every webhook."""
    url = settings.keystore()
    if url is None:
        return "the main database"
    named = shown_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if not path.parent.is_dir():
            raise click.ClickException(
                f"cannot use the keystore {named}: there is no directory {path.parent.resolve()} "
                "(CDP_KEYSTORE_URL)"
            )
        if not path.exists():
            return f"{named} (made with the first key)"
    engine = db.make_engine(
        url,
        connections=1,
        wait=settings.database_pool_timeout,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout=settings.database_statement_timeout,
        synchronous=settings.sqlite_synchronous,
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (DBAPIError, PoolTimeout) as error:
        raise click.ClickException(
            f"cannot use the keystore {named} (CDP_KEYSTORE_URL): {reason_of(error)}"
        ) from None
    finally:
        engine.dispose()
    return named


def check_key_file(settings: Settings, engine: Engine) -> str:
    """The key file, once it has been found to open the keystore's keys: an error naming
    it when it does not (see Keystore.check), before a server starts on it."""
    path = settings.key_path()
    named = str(path) if path is not None else "(in memory)"
    url = settings.keystore()
    if url is not None and not exists(url):
        return f"{named} (made with the first key)"
    keystore = Keystore.at(url, key_file=path, synchronous=settings.sqlite_synchronous)
    try:
        with engine.connect() as connection:
            keystore.check(connection)
    except (KeyFileMismatch, KeyFileError) as error:
        raise click.ClickException(str(error)) from None
    except DBAPIError as error:  # a schema older than the key file: see cdp migrate
        return f"{named} (not checked: {reason_of(error)})"
    finally:
        keystore.dispose()
    return named


def exists(url: str) -> bool:
    """Whether a keystore of its own is there yet: a SQLite file is made with the first key."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return True
    return parsed.database != ":memory:" and Path(parsed.database).exists()


def shown_url(url: str) -> str:
    """A database as a person knows it: its kind, user, host and database, or its file;
    never its password."""
    return make_url(url).render_as_string(hide_password=True)


def keystore_for(settings: Settings, engine: Engine) -> Keystore:
    """The keystore, closed when the command ends, agreeing with the main database on
    every erasure (see erasure.reconcile) before the command reads or writes a key."""
    reach_keystore(settings)
    keystore = Keystore.at(
        settings.keystore(), key_file=settings.key_path(), synchronous=settings.sqlite_synchronous
    )
    click.get_current_context().call_on_close(keystore.dispose)
    projectors = registry.projectors(settings)
    try:
        done = erasure.reconcile(engine, keystore, projectors, erasure.pause(engine))
    except (KeyFileMismatch, KeyFileError) as error:
        raise click.ClickException(str(error)) from None
    if done.moved:
        click.echo(f"moved {done.moved} keys and erasure records to {keystore.describe()}")
    for profile in (*done.applied, *done.reapplied, *done.finished):
        click.echo(f"finished the erasure of profile {profile}")
    return keystore


def reason_of(error: Exception) -> str:
    """One line: the driver's own message, without its traceback or SQL."""
    cause = getattr(error, "orig", None) or error
    return " ".join(str(cause).split()) or type(cause).__name__


def upgrade_schema(settings: Settings, engine: Engine) -> None:
    """Upgrade the schema, its migrations finding the keys in the keystore; and rebuild the
    projections when a migration changed the order they fold the log in."""
    keystore = Keystore.at(
        settings.keystore(), key_file=settings.key_path(), synchronous=settings.sqlite_synchronous
    )
    click.get_current_context().call_on_close(keystore.dispose)
    try:
        reorders = upgrades.upgrade(engine, keystore=keystore)
    except upgrades.UpgradeRefused as refused:
        raise click.ClickException(f"the schema was not upgraded: {refused}") from None
    if reorders:
        click.echo("rebuilding the projections: events are ordered anew (migration 0009)")
        projectors = registry.projectors(settings)
        erasure.reconcile(engine, keystore, projectors)
        with db.writing(engine) as connection:
            head = runner.rebuild(connection, projectors, keystore)
        click.echo(f"rebuilt up to position {head}")


def checked(work: Callable[[], T]) -> T:
    """`work()`, with a CredentialError as one line and exit status 1."""
    try:
        return work()
    except CredentialError as error:
        raise click.ClickException(str(error)) from None

"""`cdp rebuild`, `cdp catch-up` and `cdp status`: the projections built and shown."""

import sys
import time
from collections.abc import Sequence

import click
from sqlalchemy import Engine
from tqdm import tqdm

from cdp.cli.app import check_key_file, engine_for, keystore_for, main, reach_keystore, shown_url
from cdp.log import queries
from cdp.privacy.keystore import Keystore
from cdp.projections import builds, registry, runner
from cdp.projections.schemas import Projection
from cdp.settings import Settings


@main.command()
@click.option(
    "--projection",
    "names",
    multiple=True,
    metavar="NAME",
    help="Build this projection alone (again for more); default: every one.",
)
@click.pass_obj
def rebuild(settings: Settings, names: tuple[str, ...]) -> None:
    """Build projections anew from the log, beside the live ones, which keep answering (and
    webhooks keep being taken) until the new ones take their place at once.

    Exits with status 1 if a build of one of them runs already, here or on another host.
    """
    engine = engine_for(settings, existing=True)
    keystore = keystore_for(settings, engine)
    projectors = registry.projectors(settings)
    known = {projector.name: projector for projector in projectors}
    if unknown := [name for name in names if name not in known]:
        raise click.BadParameter(
            f"no projection named {unknown[0]!r}; there are {', '.join(known)}",
            param_hint="--projection",
        )
    if names:
        with engine.connect() as connection:
            chosen = builds.with_dependencies(
                connection, projectors, [known[name] for name in names]
            )
    build_chosen(engine, keystore, chosen if names else projectors)


@main.command("catch-up")
@click.pass_obj
def catch_up(settings: Settings) -> None:
    """Build the projections never built, or built by another version of cdp or under other
    settings (what `cdp status` calls new or stale), beside the live ones."""
    engine = engine_for(settings, existing=True)
    keystore = keystore_for(settings, engine)
    if not build_needed(settings, engine, keystore):
        click.echo("every projection is live: nothing to build")


def build_needed(settings: Settings, engine: Engine, keystore: Keystore) -> bool:
    """Build what builds.needed names; whether there was any."""
    projectors = registry.projectors(settings)
    with engine.connect() as connection:
        needed = builds.with_dependencies(
            connection, projectors, builds.needed(connection, projectors)
        )
    if needed:
        build_chosen(engine, keystore, needed)
    return bool(needed)


def build_chosen(engine: Engine, keystore: Keystore, chosen: Sequence[runner.Projector]) -> None:
    """Build `chosen` beside the live projections: a progress bar on a terminal, a line at
    every tenth of the way otherwise."""
    names = ", ".join(projector.name for projector in chosen)
    started = time.perf_counter()
    bar = tqdm(desc=f"build {names}", unit=" events", disable=not sys.stderr.isatty())
    told = [-1]

    def report(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        tenth = 10 * done // total if total else 10
        if bar.disable and tenth > told[0]:
            told[0] = tenth
            click.echo(f"building {names}: {done} of {total} events", err=True)

    try:
        head = builds.run(engine, chosen, keystore, report=report)
    except builds.BuildRunning as busy:
        raise click.ClickException(str(busy)) from None
    finally:
        bar.close()
    click.echo(f"built {names} up to position {head} in {time.perf_counter() - started:.2f} s")


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Print the database, the log head, each projection's position, and row counts."""
    engine = engine_for(settings, existing=True)
    keystore = reach_keystore(settings)
    key_file = check_key_file(settings, engine)
    with engine.connect() as connection:
        states = builds.states(connection, registry.projectors(settings))
        counts = queries.counts(connection)
    click.echo(f"database: {shown_url(settings.database_url)}")
    click.echo(f"keys in: {keystore}")
    click.echo(f"key file: {key_file}")
    click.echo(f"log head: {states[0].head if states else 0}")
    for state in states:
        click.echo(
            f"projection {state.name}: position {state.position}, lag {state.lag}, "
            f"{_described(state)}"
        )
    for name, count in counts.items():
        click.echo(f"{name}: {count}")


def _described(state: Projection) -> str:
    """A projection's status, and what differs from what built it."""
    said: str = state.status
    if state.status == "stale":
        said += (
            f" (built by version {state.built_version} with {state.built_shape or 'no settings'};"
            f" this is version {state.version} with {state.shape or 'no settings'})"
        )
    if state.build is not None and state.build.state in ("running", "interrupted", "failed"):
        build = state.build
        said += f"; build {build.state}: {build.done} of {build.total} events, by {build.owner}"
    return said

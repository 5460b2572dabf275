"""`cdp rejected replay` and `cdp verify`: rejected deliveries retried, the hash chain checked."""

import sys

import click

from cdp.cli.app import engine_for, keystore_for, main
from cdp.log import chain, ingest, queries
from cdp.projections import registry
from cdp.settings import Settings


@main.group("rejected")
def rejected_() -> None:
    """Deliveries refused as bad input, kept apart from the log (GET /rejected lists them)."""


@rejected_.command("replay")
@click.option("--id", "ids", multiple=True, type=int, help="A rejected delivery's id (repeatable).")
@click.option("--all", "every", is_flag=True, help="Every rejected delivery.")
@click.pass_obj
def rejected_replay(settings: Settings, ids: tuple[int, ...], every: bool) -> None:
    """Run rejected deliveries through today's checks; move those that pass into the log.

    Each moves exactly once: it is logged and forgotten in one transaction. Those still
    refused are kept, and listed with their reason.
    """
    if bool(ids) == every:
        raise click.UsageError("give --id N (one or more) or --all")
    engine = engine_for(settings, existing=True)
    keystore = keystore_for(settings, engine)
    moved = kept = 0
    found = ingest.replay_rejected(
        engine,
        registry.projectors(settings),
        settings.max_clock_skew,
        list(ids) if ids else None,
        keystore=keystore,
    )
    for id_, error in found:
        if error is None:
            moved += 1
        else:
            kept += 1
            click.echo(f"{id_}: still refused: {error}")
    click.echo(f"moved into the log: {moved}, still refused: {kept}")


@main.command()
@click.option(
    "--expect",
    metavar="POSITION:HASH",
    help="A head an auditor kept: the row at POSITION must still have HASH.",
)
@click.pass_obj
def verify(settings: Settings, expect: str | None) -> None:
    """Walk the log's hash chain; print the head hash to keep, or where the chain breaks.
    Then open every sealed body with its key, and count those that cannot be opened though
    not erased.

    Exits with status 1 when the chain breaks, when --expect does not hold, or when a body
    cannot be opened.
    """
    anchor = _anchor(expect) if expect else None
    engine = engine_for(settings, existing=True)
    keystore = keystore_for(settings, engine)
    with engine.connect() as connection:
        verdict = chain.verify(connection, anchor=anchor)
        opened = queries.openings(connection, keystore) if verdict.broken_at is None else None
    if verdict.broken_at is not None:
        click.echo(
            f"the chain breaks at position {verdict.broken_at}: that row, or one before it, "
            f"was edited, deleted or inserted out of order ({verdict.rows} rows hold up to "
            f"position {verdict.position})"
        )
        sys.exit(1)
    if anchor is not None and not verdict.anchored:
        click.echo(f"position {anchor[0]} no longer has hash {anchor[1]}: the log was rewritten")
        sys.exit(1)
    click.echo(f"{verdict.rows} rows, the chain holds; head: {verdict.position}:{verdict.hash}")
    assert opened is not None
    click.echo(f"bodies: {opened.whole} open, {opened.erased} erased")
    if opened.missing_key:
        click.echo(
            f"{opened.missing_key} bodies cannot be opened: their keys are not in the keystore "
            f"({keystore.describe()}) and no erasure destroyed them; is CDP_KEYSTORE_URL the "
            "keystore the server uses, or was it restored from a backup older than them?"
        )
    if opened.broken:
        click.echo(
            f"{opened.broken} bodies cannot be opened: their key does not open them, so their "
            "sealed copy was changed (or the keystore holds another key under the same id)"
        )
    if not opened.sound:
        sys.exit(1)


def _anchor(value: str) -> tuple[int, str]:
    position, _, hash_ = value.partition(":")
    if not position.isdigit() or len(hash_) != 64 or hash_.strip("0123456789abcdef"):
        raise click.BadParameter(
            f"{value[:100]!r}: write POSITION:HASH, as cdp verify prints the head",
            param_hint="--expect",
        )
    return int(position), hash_

"""`cdp source` and `cdp token`: who may send webhooks and who may ask."""

from datetime import timedelta

import click

from cdp.access import credentials
from cdp.cli.app import checked, engine_for, main
from cdp.log.webhook import (
    DEFAULT_SOURCE,
)
from cdp.settings import Settings
from cdp.times import iso, utc


@main.group()
def source() -> None:
    """Who may post webhooks: each source has a name and a secret.

    Fasttrack posts to /webhooks/fasttrack/NAME?token=SECRET. A secret is shown once, when
    it is made; the database keeps only its digest.
    """


@source.command("add")
@click.argument("name")
@click.option("--signed", is_flag=True, help="Also require a Standard Webhooks signature.")
@click.pass_obj
def source_add(settings: Settings, name: str, signed: bool) -> None:
    """Add a source and print its secret (and signing key)."""
    with engine_for(settings).begin() as connection:
        issued = checked(lambda: credentials.add_source(connection, name, signed=signed))
    _show_issued(name, issued)


@source.command("rotate")
@click.argument("name")
@click.option(
    "--grace",
    default=86400,
    show_default=True,
    type=click.IntRange(0, 366 * 86400),
    help="Seconds the old secret (and signing key) stay valid; 0 after a leak.",
)
@click.option("--signed/--unsigned", default=None, help="Start or stop requiring signatures.")
@click.pass_obj
def source_rotate(settings: Settings, name: str, grace: int, signed: bool | None) -> None:
    """Give a source a new secret (and signing key) and print it."""
    with engine_for(settings, existing=True).begin() as connection:
        issued = checked(
            lambda: credentials.rotate_source(
                connection, name, grace=timedelta(seconds=grace), signed=signed
            )
        )
    _show_issued(name, issued)
    if grace:
        click.echo(f"the old secret stays valid for {grace} s")


@source.command("remove")
@click.argument("name")
@click.pass_obj
def source_remove(settings: Settings, name: str) -> None:
    """Refuse a source's webhooks from now on; what it delivered stays in the log."""
    with engine_for(settings, existing=True).begin() as connection:
        checked(lambda: credentials.remove_source(connection, name))
    click.echo(f"source {name} removed")


@source.command("list")
@click.pass_obj
def source_list(settings: Settings) -> None:
    """List the sources (never their secrets)."""
    with engine_for(settings, existing=True).connect() as connection:
        found = credentials.list_sources(connection)
    for item in found:
        notes = ["signed" if item.signed else "unsigned"]
        if item.previous_until:
            notes.append(f"old secret valid until {iso(utc(item.previous_until))}")
        click.echo(f"{item.name}\tcreated {iso(utc(item.created_at))}\t{', '.join(notes)}")
    if not found:
        click.echo("no sources: webhooks need no secret (cdp serve listens on 127.0.0.1 only)")


def _show_issued(name: str, issued: credentials.Issued) -> None:
    click.echo(f"source: {name}")
    click.echo(f"secret: {issued.secret}")
    if issued.signing_key:
        click.echo(f"signing key: {issued.signing_key}")
    path = "/webhooks/fasttrack" + ("" if name == DEFAULT_SOURCE else f"/{name}")
    click.echo(f"webhook address: https://<your host>{path}?token={issued.secret}")
    click.echo("the secret is shown this once: keep it now")


@main.group()
def token() -> None:
    """Who may query: read tokens, and admin tokens that may also rebuild and manage."""


@token.command("create")
@click.option(
    "--role",
    type=click.Choice(credentials.ROLES),
    required=True,
    help="read: queries, /metrics, the event stream and the console; admin: also "
    "rebuilds, erasure, rejected deliveries and sources (the console's operations page).",
)
@click.option("--name", help="How the token is listed and revoked (default: ROLE-N).")
@click.pass_obj
def token_create(settings: Settings, role: credentials.Role, name: str | None) -> None:
    """Create a token and print it: it is shown this once."""
    with engine_for(settings).begin() as connection:
        if name is None:
            taken = {item.name for item in credentials.list_tokens(connection)}
            name = next(
                f"{role}-{n}" for n in range(1, len(taken) + 2) if f"{role}-{n}" not in taken
            )
        secret = checked(lambda: credentials.create_token(connection, name, role))
    click.echo(f"token {name} ({role}): {secret}")
    click.echo("send it as Authorization: Bearer <token>; it is shown this once: keep it now")


@token.command("revoke")
@click.argument("name")
@click.pass_obj
def token_revoke(settings: Settings, name: str) -> None:
    """Revoke a token: refused within a second, by every running server."""
    with engine_for(settings, existing=True).begin() as connection:
        checked(lambda: credentials.revoke_token(connection, name))
    click.echo(f"token {name} revoked")


@token.command("list")
@click.pass_obj
def token_list(settings: Settings) -> None:
    """List the tokens by name and role (never the tokens themselves)."""
    with engine_for(settings, existing=True).connect() as connection:
        found = credentials.list_tokens(connection)
    for item in found:
        click.echo(f"{item.name}\t{item.role}\tcreated {iso(utc(item.created_at))}")
    if not found:
        click.echo("no tokens: queries need none (cdp serve listens on 127.0.0.1 only)")

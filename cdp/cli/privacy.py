"""`cdp erase`: a profile's personal data destroyed."""

import click

from cdp.access.credentials import CredentialError
from cdp.cli.app import checked, engine_for, keystore_for, main
from cdp.log.webhook import (
    identifier_problem,
)
from cdp.privacy import erasure
from cdp.projections import registry
from cdp.settings import Settings


@main.command()
@click.option("--profile", "profile_uuid", help="The uuid of the profile to erase.")
@click.option(
    "--suppress",
    is_flag=True,
    help="Also refuse the profile's later webhooks (kept as rejected deliveries without "
    "personal data, and counted).",
)
@click.option(
    "--reconcile",
    is_flag=True,
    help="Only finish erasures the database and the keystore disagree on (after restoring "
    "either from a backup).",
)
@click.pass_obj
def erase(settings: Settings, profile_uuid: str | None, suppress: bool, reconcile: bool) -> None:
    """Erase a customer's personal data everywhere, the log included, by destroying the
    keys it is sealed with; what happened, when, and which team handled it stays."""
    if bool(profile_uuid) == reconcile:
        raise click.UsageError("give --profile UUID, or --reconcile")
    engine = engine_for(settings, existing=True)
    keystore = keystore_for(settings, engine)
    if profile_uuid is None:
        click.echo("the database and the keystore agree on every erasure")
        return
    checked(lambda: _identifier(profile_uuid))
    done = erasure.erase(
        engine,
        keystore,
        registry.projectors(settings),
        profile_uuid,
        suppress=suppress,
        between=erasure.pause(engine),
    )
    click.echo(
        f"erased profile {done.profile_uuid}: {len(done.chats)} chats, "
        f"{done.keys_destroyed} keys destroyed"
        + ("; its later webhooks are refused" if done.suppressed else "")
    )


def _identifier(value: str) -> None:
    problem = identifier_problem(value)
    if problem is not None:
        raise CredentialError(f"--profile {value[:64]!r}: {problem}")

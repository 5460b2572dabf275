"""`cdp migrate`: the schema brought to the latest migration."""

import click

from cdp import upgrades
from cdp.cli.app import connect, main, reach_keystore, upgrade_schema
from cdp.settings import Settings


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Upgrade the database schema to the latest migration."""
    engine = connect(settings)
    reach_keystore(settings)
    upgrade_schema(settings, engine)
    click.echo(f"schema at revision {upgrades.pending(engine)[0]}")

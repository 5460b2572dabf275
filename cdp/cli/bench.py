"""`cdp bench`: the figures, each beside its baseline measured in the same run."""

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from cdp.bench import GROUPS
from cdp.cli.app import main
from cdp.settings import Settings


@main.command()
@click.option(
    "--database",
    "url",
    help="Where to measure: a PostgreSQL server (databases are made and dropped on it), "
    "or sqlite:/// (files in a temporary folder). Default: CDP_DATABASE_URL's kind.",
)
@click.option(
    "--events",
    default=10_000,
    show_default=True,
    type=click.IntRange(100, 10**8),
    help="How many events the measured log holds (fewer than 10 000: a quick look).",
)
@click.option(
    "--seed",
    default=1,
    show_default=True,
    type=int,
    help="Seeds the generated traffic: the same seed makes the same webhooks.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write every figure to this file, as JSON.",
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(GROUPS),
    help="Measure these figures alone (repeat for several): the import and rebuild, the "
    "queries, the console's pages, one webhook, HTTP ingest, HTTP ingest with several "
    "workers (PostgreSQL), webhooks during a rebuild, a page of a large profile, the "
    "erasure of one and webhooks meanwhile, or HTTP ingest and a query with live event "
    "streams open.",
)
@click.option(
    "--soak",
    "soak_seconds",
    type=click.IntRange(1, 7 * 86_400),
    metavar="SECONDS",
    help="Measure nothing: for SECONDS, 16 clients post new webhooks, post sent ones again "
    "and query one server; then check that nothing was lost or stored twice and that every "
    "projection equals a rebuild (exit status 1 if not).",
)
@click.pass_obj
def bench(
    settings: Settings,
    url: str | None,
    events: int,
    seed: int,
    json_path: str | None,
    only: tuple[str, ...],
    soak_seconds: int | None,
) -> None:
    """Measure this installation: each figure beside a baseline measured in the same run.

    Generates its own seeded traffic; touches no existing database.
    """
    database = url or settings.database_url
    if soak_seconds is not None:
        _soak(settings, database, soak_seconds, seed)
        return
    from cdp.bench import progress
    from cdp.bench.run import Figure, Plan, measure

    click.echo(
        f"cdp bench: {events:,} events, seed {seed}, on {make_url(database).get_backend_name()}"
    )
    click.echo(f"{'figure':<86} {'value':>12}  {'baseline':>12}  {'ratio':>8}  unit, baseline")

    def show(figure: Figure) -> None:
        baseline = f"{figure.baseline:>12,.1f}" if figure.baseline else " " * 12
        ratio = f"{figure.ratio:8.2f}" if figure.ratio is not None else " " * 8
        progress.clear()  # a note of what was being measured: the figure takes its line
        click.echo(
            f"{figure.name:<86} {figure.value:>12,.1f}  {baseline}  {ratio}  "
            f"{figure.unit}{', vs ' + figure.baseline_name if figure.baseline_name else ''}"
        )

    plan = replace(Plan.of(database, events, seed, settings), only=frozenset(only))
    figures = measure(plan, show)
    if json_path:
        rows = [{**asdict(figure), "ratio": figure.ratio} for figure in figures]
        Path(json_path).write_text(
            json.dumps({"events": events, "seed": seed, "figures": rows}, indent=2)
        )


def _soak(settings: Settings, database: str, seconds: int, seed: int) -> None:
    from cdp.bench.soak import CLIENTS, soak

    kind = make_url(database).get_backend_name()
    click.echo(
        f"cdp bench --soak {seconds}: {CLIENTS} clients against one server, on {kind}, seed {seed}"
    )
    soaked = soak(database, seconds, settings, seed=seed)
    for line in soaked.report():
        click.echo(line)
    if not soaked.passed:
        sys.exit(1)

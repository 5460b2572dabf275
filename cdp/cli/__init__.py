"""The `cdp` command: `main`, with the commands each module here adds to it."""

from cdp.cli import access, bench, imports, log, privacy, projections, reports, schema, serve
from cdp.cli.app import main

# Each module adds its commands to `main` as it is imported.
COMMANDS = (access, bench, imports, log, privacy, projections, reports, schema, serve)

__all__ = ["main"]

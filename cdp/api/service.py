"""What every handler may ask for: the settings, the database, the projectors, the clock."""

from dataclasses import dataclass

from sqlalchemy import Engine

from cdp.projectors import Projector
from cdp.queries import Clock
from cdp.settings import Settings


@dataclass(frozen=True)
class Service:
    settings: Settings
    engine: Engine
    projectors: list[Projector]
    clock: Clock

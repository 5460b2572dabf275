"""What every table shares: the declarative base, its naming convention, the position type.

Times are integer milliseconds since the Unix epoch (UTC), the unit of the
webhooks' own `timestamp`: exact, and the same arithmetic on every database.

Each capability declares its tables in its own `tables.py`; cdp.upgrades
imports them all.
"""

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    MetaData,
    Table,
)
from sqlalchemy.orm import DeclarativeBase

# SQLite autoincrements only an INTEGER PRIMARY KEY, PostgreSQL wants a BIGINT.
Position = BigInteger().with_variant(Integer(), "sqlite")


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[int]: JSON, list[str]: JSON}


def table_of(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table

"""How far each projection has got in the log, and what built it."""

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cdp.tables import Base, table_of


class CheckpointRow(Base):
    """How far into the log each projector has got, written with the projector's rows;
    and what built its tables: the projector's version and the settings that shape it
    (None: built before versions were recorded)."""

    __tablename__ = "projection_checkpoints"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int | None] = mapped_column(Integer)
    shape: Mapped[str | None] = mapped_column(Text)
    built_at: Mapped[int | None] = mapped_column(BigInteger)


class BuildRow(Base):
    """The latest build of each projection beside the live one (see
    cdp.projections.builds): who runs it, how far it got, and how it ended. `heartbeat_at`
    moves with every batch: a build whose heartbeat stopped was interrupted."""

    __tablename__ = "projection_builds"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))  # running, done, failed
    owner: Mapped[str] = mapped_column(String(200))  # host and process id
    started_at: Mapped[int] = mapped_column(BigInteger)
    heartbeat_at: Mapped[int] = mapped_column(BigInteger)
    done: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)


checkpoints = table_of(CheckpointRow)


projection_builds = table_of(BuildRow)

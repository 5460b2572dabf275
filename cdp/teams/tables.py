"""Teams by the names Fasttrack gives them."""

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cdp.tables import Base, table_of


class TeamRow(Base):
    """Every team the events named, in each source, with its latest name: the one the
    latest event naming it carried, in the fold's order (named_at, named_rank, named_key)."""

    __tablename__ = "teams"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str | None] = mapped_column(Text)
    named_at: Mapped[int] = mapped_column(BigInteger)
    named_rank: Mapped[int] = mapped_column(Integer)
    named_key: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[int] = mapped_column(BigInteger)


teams = table_of(TeamRow)

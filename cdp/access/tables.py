"""Sources, their tokens for queries, and the source each chat and profile belongs to."""

from sqlalchemy import (
    BigInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cdp.tables import Base, table_of


class SourceRow(Base):
    """A sender of webhooks (a Fasttrack project), and what proves a delivery is its own.

    Secrets are kept as SHA-256 digests; a rotated one stays valid until `previous_until`.
    Signing keys (Standard Webhooks) are kept as given: checking an HMAC needs the key.
    """

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_digest: Mapped[str] = mapped_column(String(64))
    previous_digest: Mapped[str | None] = mapped_column(String(64))
    previous_until: Mapped[int | None] = mapped_column(BigInteger)
    signing_key: Mapped[str | None] = mapped_column(Text)
    previous_signing_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class TokenRow(Base):
    """A bearer token of the query API: `read` or `admin`, kept as a SHA-256 digest."""

    __tablename__ = "tokens"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class OwnerRow(Base):
    """The source each chat and profile belongs to: the one that first delivered an event
    naming it (subject "chat:<uuid>" or "profile:<uuid>"). Another source's events naming
    it are refused, so a source cannot write into another's customers."""

    __tablename__ = "owners"

    subject: Mapped[str] = mapped_column(String(210), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))


sources = table_of(SourceRow)


tokens = table_of(TokenRow)


owners = table_of(OwnerRow)

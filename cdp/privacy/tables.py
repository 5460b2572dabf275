"""The keystore's tables and the erasures' record."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cdp.tables import Base, table_of


class KeyRow(Base):
    """The live key of each subject (a chat, or a profile): destroyed by erasure.

    Kept in the keystore, CDP_KEYSTORE_URL, which may be a database of its own; its
    material wrapped under the key-encryption key of its bucket (see cdp.privacy.keyfile).
    """

    __tablename__ = "keys"
    # The keys of a bucket still wrapped under an earlier generation than its own.
    __table_args__ = (Index("ix_keys_bucket_generation", "bucket", "generation"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(210), unique=True)
    material: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)
    bucket: Mapped[int] = mapped_column(Integer)
    # The generation of the bucket's key-encryption key the material is wrapped under.
    generation: Mapped[int] = mapped_column(BigInteger)


class KeyBucketRow(Base):
    """Each bucket's key-encryption key (see cdp.privacy.keyfile): the generation that new keys are
    wrapped under; the one every key of it is wrapped under at least (`wrapped`: the key
    file may be brought to it, no further); and whether an erasure destroyed a key of it
    since its generation began (`stale`): then the generation moves on, every key is
    wrapped anew under it, a step at a time, and only then is the last one overwritten."""

    __tablename__ = "key_buckets"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger)
    wrapped: Mapped[int] = mapped_column(BigInteger)
    stale: Mapped[bool] = mapped_column(Boolean)


class ErasedSubjectRow(Base):
    """A subject whose keys were destroyed, when, at whose request; kept in the keystore,
    so that an erasure outlives a restored backup of the database, and the other way round."""

    __tablename__ = "erased_subjects"

    subject: Mapped[str] = mapped_column(String(210), primary_key=True)
    profile_uuid: Mapped[str] = mapped_column(String(200))
    erased_at: Mapped[int] = mapped_column(BigInteger)
    suppressed: Mapped[bool] = mapped_column(Boolean)


class ErasureRow(Base):
    """A profile erased on request: its chats, and how many webhooks were refused since."""

    __tablename__ = "erasures"

    profile_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    erased_at: Mapped[int] = mapped_column(BigInteger)
    suppressed: Mapped[bool] = mapped_column(Boolean)
    chats: Mapped[list[str]] = mapped_column(JSON)
    refused: Mapped[int] = mapped_column(BigInteger)


class PendingErasureRow(Base):
    """A chat that an erasure begun has still to reach: its keys destroyed and its rows
    folded again, a few chats a transaction (see cdp.privacy.erasure). While a profile has any,
    it is being erased."""

    __tablename__ = "pending_erasures"

    profile_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    chat_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)


keys = table_of(KeyRow)


key_buckets = table_of(KeyBucketRow)


erased_subjects = table_of(ErasedSubjectRow)


erasures = table_of(ErasureRow)


pending_erasures = table_of(PendingErasureRow)

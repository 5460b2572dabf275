"""Which chats make up each profile."""

from sqlalchemy import (
    BigInteger,
    Index,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from cdp.tables import Base, table_of


class ProfileChatRow(Base):
    """Every (profile, chat) pair the events named, and when."""

    __tablename__ = "profile_chats"
    __table_args__ = (
        # When a profile was first and last named, and on which chat last: each read from
        # one end of an index, however many chats it was named on.
        Index("ix_profile_chats_first_seen_at", "profile_uuid", "first_seen_at"),
        Index("ix_profile_chats_last_seen_at", "profile_uuid", "last_seen_at", "chat_uuid"),
        # A chat's pairs: what an erasure deletes, a few chats at a time, to fold them again.
        Index("ix_profile_chats_chat_uuid", "chat_uuid"),
    )

    profile_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    chat_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_seen_at: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[int] = mapped_column(BigInteger)


profile_chats = table_of(ProfileChatRow)

"""What the API answers about profiles."""

from pydantic import BaseModel

from cdp.http.schemas import Instant


class ProfileChat(BaseModel):
    uuid: str
    platform: str | None
    name: str | None
    phone: str | None
    avatar: str | None
    first_seen_at: Instant
    last_seen_at: Instant


class Profile(BaseModel):
    """A customer's own fields, then the first page of their chats: `chats_next` is the
    `after` of the next (GET /profiles/{uuid}/chats), null if there is none."""

    uuid: str
    phones: list[str]
    names: list[str]
    first_seen_at: Instant
    last_seen_at: Instant
    merged_into: str | None
    chats: list[ProfileChat]
    chats_next: str | None

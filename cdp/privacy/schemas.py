"""What the API answers about an erasure."""

from pydantic import BaseModel

from cdp.http.schemas import Instant


class Erasure(BaseModel):
    """A profile erased: the chats folded again without its personal data, the keys
    destroyed this time, and whether its later webhooks are refused."""

    profile_uuid: str
    erased_at: Instant
    chats: list[str]
    keys_destroyed: int
    suppressed: bool

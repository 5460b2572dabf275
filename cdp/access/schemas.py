"""What the API answers about sources."""

from pydantic import BaseModel

from cdp.http.schemas import Instant


class Source(BaseModel):
    """A sender of webhooks; its secret is never shown again after `cdp source add`."""

    name: str
    created_at: Instant
    signed: bool
    previous_valid_until: Instant | None  # a rotated secret's grace period

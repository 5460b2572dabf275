"""What the API answers about projections and their builds."""

from typing import Literal

from pydantic import BaseModel

from cdp.http.schemas import Instant


class Build(BaseModel):
    """The latest build of a projection beside the live one (see `cdp rebuild`)."""

    state: Literal["running", "done", "failed", "interrupted"]
    owner: str  # host:pid of the process that runs it
    started_at: Instant
    heartbeat_at: Instant  # when it last told its progress: a running build, every batch
    finished_at: Instant | None
    done: int  # events projected so far
    total: int  # events to project: the log head when last told
    error: str | None


class Projection(BaseModel):
    """A read model: how far it has got, and whether what built it is what runs now.

    `status`: `live` (built by this version and settings, following the log), `stale`
    (built by another version or under other settings: it still answers, and is built
    anew beside itself), `new` (never built: it answers nothing yet), or `rebuilding`
    (a build beside it is running, see `build`)."""

    name: str
    status: Literal["live", "stale", "new", "rebuilding"]
    version: int
    built_version: int | None
    shape: str
    built_shape: str | None
    position: int
    head: int
    lag: int
    lag_seconds: float
    build: Build | None

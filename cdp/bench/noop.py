"""The HTTP baseline of `cdp bench`: the same server stack, an endpoint that does nothing.

It reads each body as POST /webhooks/fasttrack does and answers as it would, without
checking or storing anything: what cdp's ingest costs is the difference.
"""

from litestar import Litestar, post
from litestar.params import RawBody


@post("/webhooks/fasttrack/{source:str}", status_code=202)
async def receive(source: str, token: str, body: RawBody) -> dict[str, object]:
    return {"position": len(body), "duplicate": False}


app = Litestar([receive], logging_config=None)

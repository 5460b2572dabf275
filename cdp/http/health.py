"""GET /health: the service answers, and so do its database and its keystore."""

import logging

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cdp.http.schemas import Health
from cdp.log import store
from cdp.privacy.keystore import Keystore
from cdp.runtime.service import Service

logger = logging.getLogger("cdp.api")


@get("/health", tags=["service"], summary="Is the service up?")
async def health(service: NamedDependency[Service]) -> Health:
    """Answers 200 while the service, its database and its keystore answer, 503 otherwise:
    without its keys the service can take no webhook and open no body."""
    head = await service.health.query(store.head)
    keystore = await service.health.run(lambda: _keystore_answers(service.keystore))
    return Health(status="ok", database=service.engine.dialect.name, keystore=keystore, head=head)


def _keystore_answers(keystore: Keystore) -> str:
    """Where the keys are (`main`: the main database, or the kind of their own database),
    once it answered; 503 when it does not, the log naming it (the answer does not)."""
    if keystore.engine is None:
        return "main"
    try:
        with keystore.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (DBAPIError, PoolTimeout) as error:
        cause = getattr(error, "orig", None) or error
        logger.warning(
            "the keystore %s cannot be reached: %s: %s",
            keystore.describe(),
            type(cause).__name__,
            " ".join(str(cause).split()),
        )
        raise ServiceUnavailableException(
            "the keystore cannot be reached: no webhook can be taken, no body opened",
            headers={"Retry-After": "5"},
        ) from None
    return keystore.engine.dialect.name

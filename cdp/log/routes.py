"""The log over HTTP: webhooks in, events and rejected deliveries out."""

import time
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from cdp.access import auth
from cdp.access.auth import Gate
from cdp.access.credentials import signature_problem
from cdp.http import requestlog
from cdp.http.openapi import WebhookOperation, not_found, problem
from cdp.http.params import Limit
from cdp.log import queries, stream
from cdp.log.schemas import Event, EventPage, RejectedPage
from cdp.log.store import Receipt
from cdp.log.webhook import DEFAULT_SOURCE, INT64_MAX, BodyTooLarge, content_type_problem
from cdp.runtime.service import Service
from cdp.times import now_ms

Token = Annotated[
    str | None,
    QueryParameter(
        description="The source's secret, for senders that can only be given a URL "
        "(or send it as Authorization: Bearer). Never written to a log."
    ),
]


Source = Annotated[
    str,
    PathParameter(
        description="The source's name, as `cdp source add` made it",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
    ),
]


_SIGNATURE_HEADERS: Final = ("webhook-id", "webhook-timestamp", "webhook-signature")


_RESPONSES: Final = {
    200: ResponseSpec(
        Receipt,
        description="Already logged: the position of the first copy; nothing stored",
        generate_examples=False,
        examples=[Example(summary="a redelivery", value={"position": 7, "duplicate": True})],
    ),
    400: problem(
        "The body is not a JSON object, or nests deeper than 64 levels",
        {"detail": "body is not valid JSON: Expecting value: line 1 column 1 (char 0)"},
    ),
    401: problem(
        "The source's secret is missing or wrong, or its signature does not hold; nothing stored",
        {
            "detail": "unknown source or wrong secret: give the source's secret as ?token= "
            "or Authorization: Bearer"
        },
    ),
    409: problem(
        "The webhook names a chat or profile that another source's webhooks named first: "
        "kept as a rejected delivery, never logged",
        {"detail": "chat 0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10 belongs to another source"},
    ),
    410: problem(
        "The webhook names a customer erased and suppressed on request (cdp erase "
        "--suppress): kept as a rejected delivery without its personal data, never logged",
        {
            "detail": "profile 5d2c1e0a-7b7f-4c1e-8d5e-2a9b4f6c8e01 was erased and its "
            "webhooks are refused (cdp erase --suppress)"
        },
    ),
    413: problem(
        "The body is larger than CDP_MAX_BODY_SIZE; read no further, nothing stored",
        {"detail": "the body is larger than 1048576 bytes (CDP_MAX_BODY_SIZE)"},
    ),
    415: problem(
        "The Content-Type is not JSON; nothing stored",
        {"detail": "Content-Type 'text/plain' is not JSON: send application/json"},
    ),
    422: problem(
        "The webhook is invalid: `errors` names each field; nothing stored",
        {
            "detail": "invalid webhook: payload.session.team.id: must be an integer "
            "or a string of digits (up to 2^63-1), got '12a'",
            "errors": [
                {
                    "path": "payload.session.team.id",
                    "message": "must be an integer or a string of digits (up to 2^63-1), got '12a'",
                }
            ],
        },
    ),
}


class WebhookController(Controller):
    path = "/webhooks/fasttrack"
    tags = ["ingest"]
    request_max_body_size = None  # read by _deliver, which keeps what it read of one too large

    @post(
        "/{source:str}",
        status_code=HTTP_202_ACCEPTED,
        summary="Receive a webhook from a source",
        operation_class=WebhookOperation,
        response_description="Logged and projected: every query already reflects it",
        responses=_RESPONSES,
    )
    async def receive_from(
        self,
        source: Source,
        request: Request[Any, Any, Any],
        service: NamedDependency[Service],
        gate: NamedDependency[Gate],
        token: Token = None,
    ) -> Response[Receipt]:
        """Log one webhook exactly as it arrived and project it, in one transaction.

        A body logged before (the same JSON, whatever its key order or spacing) is a
        duplicate: 200 with the first copy's position. Once this answers 202, every query
        reflects the webhook.
        """
        return await _deliver(request, service, gate, source)

    @post(
        status_code=HTTP_202_ACCEPTED,
        summary="Receive a webhook from the default source",
        operation_class=WebhookOperation,
        response_description="Logged and projected: every query already reflects it",
        responses=_RESPONSES,
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        service: NamedDependency[Service],
        gate: NamedDependency[Gate],
        token: Token = None,
    ) -> Response[Receipt]:
        """As POST /webhooks/fasttrack/default: for a store with one source."""
        return await _deliver(request, service, gate, DEFAULT_SOURCE)


async def _deliver(
    request: Request[Any, Any, Any], service: Service, gate: Gate, source: str
) -> Response[Receipt]:
    started = time.perf_counter()
    requestlog.note(request.scope, source=source)
    ring = await gate.sender(request, source)
    headers = request.headers  # the writer keeps those of interest of a refused delivery
    try:
        body = await _body(request, service.settings.max_body_size)
    except BodyTooLarge as error:  # kept, then raised
        await service.webhooks.record(b"", source, headers, rejection=error, started=started)
        raise
    not_json = content_type_problem(request.headers.get("content-type"))
    if not_json is not None:  # kept with its body: a replay may find it is JSON after all
        try:
            await service.webhooks.record(
                body, source, headers, rejection=not_json, started=started
            )
        finally:
            del not_json  # raised by record: see there why no frame it passes may keep it
    keys = ring.signing_keys(source, now_ms())
    if keys:
        signature = {name: headers.get(name) for name in _SIGNATURE_HEADERS}
        problem = signature_problem(keys, signature, body, now_ms())
        if problem is not None:
            gate.refuse(request, problem)
    receipt = await service.webhooks.record(body, source, headers, started=started)
    return Response(receipt, status_code=HTTP_200_OK if receipt.duplicate else HTTP_202_ACCEPTED)


async def _body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The body, read no further than `limit` bytes: BodyTooLarge keeps those."""
    announced = request.headers.get("content-length")
    # isdecimal, not isdigit: a server may pass on "²", a digit that int() cannot read.
    if announced is not None and announced.isdecimal() and int(announced) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            kept = b"".join(chunks) + chunk
            raise BodyTooLarge(limit, kept[:limit])
        chunks.append(chunk)
    return b"".join(chunks)


class EventController(Controller):
    path = "/events"
    guards = [auth.reader]
    tags = ["log"]

    @get(summary="The log, page by page")
    async def page(
        self,
        service: NamedDependency[Service],
        after: Annotated[int, QueryParameter(ge=0, le=INT64_MAX)] = 0,
        limit: Limit = 100,
        event_type: FromQuery[str | None] = None,
        chat_uuid: FromQuery[str | None] = None,
        profile_uuid: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
    ) -> EventPage:
        """Events after a position, oldest first; follow `next_after` until it is null."""
        return await service.reads.query(
            queries.events,
            service.keystore,
            after=after,
            limit=limit,
            event_type=event_type,
            chat_uuid=chat_uuid,
            profile_uuid=profile_uuid,
            source=source,
        )

    @get(
        "/{position:str}",
        summary="One logged event",
        responses=not_found("no event at position 42"),
    )
    async def one(
        self,
        position: Annotated[int, PathParameter(ge=1, le=INT64_MAX)],
        service: NamedDependency[Service],
    ) -> Event:
        """One logged event, its body exactly as it was received (only its fields that are no
        personal data once erased), and its hash in the log's chain (see `cdp verify`)."""
        found = await service.reads.query(queries.event, service.keystore, position)
        if found is None:
            raise NotFoundException(f"no event at position {position}")
        return found


class RejectedController(Controller):
    path = "/rejected"
    tags = ["ingest"]
    guards = [auth.admin]

    @get(summary="Deliveries refused as bad input")
    async def page(
        self,
        service: NamedDependency[Service],
        after: Annotated[int, QueryParameter(ge=0, le=INT64_MAX)] = 0,
        limit: Limit = 100,
        source: FromQuery[str | None] = None,
    ) -> RejectedPage:
        """Refused deliveries (400, 409, 410, 413, 415, 422) after an id, oldest first, with their
        bytes, headers and reason; follow `next_after` until it is null. A page holds at
        most 4 MiB of bodies. `cdp rejected replay` moves into the log those that pass
        today's checks."""
        return await service.reads.query(
            queries.rejected_deliveries, service.keystore, after=after, limit=limit, source=source
        )


# What cdp.http.app serves of the log (see cdp.capabilities).
ROUTES: Final = (WebhookController, EventController, stream.StreamController, RejectedController)

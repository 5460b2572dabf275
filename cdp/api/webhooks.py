"""POST /webhooks/fasttrack: where Fasttrack delivers."""

from litestar import Controller, Response, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import RawBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from cdp import ingest, webhook
from cdp.api.service import Service
from cdp.log import Receipt as Logged
from cdp.schemas import Problem, Receipt


class WebhookController(Controller):
    path = "/webhooks/fasttrack"
    tags = ["ingest"]

    @post(
        status_code=HTTP_202_ACCEPTED,
        responses={
            200: ResponseSpec(Receipt, description="Already logged: the original position"),
            400: ResponseSpec(Problem, description="The body is not a JSON object"),
            422: ResponseSpec(
                Problem, description="The webhook is invalid; `errors` names each field"
            ),
        },
    )
    async def receive(self, body: RawBody, service: NamedDependency[Service]) -> Response[Receipt]:
        """Log one webhook as it arrived and project it, in one transaction."""

        def record() -> Logged:
            latest = webhook.latest_timestamp(service.settings.max_clock_skew)
            incoming = webhook.parse(body, latest=latest)
            (receipt,) = ingest.record(service.engine, [incoming], service.projectors)
            return receipt

        receipt = await service.work("webhooks", record)
        return Response(
            Receipt(position=receipt.position, duplicate=receipt.duplicate),
            status_code=HTTP_200_OK if receipt.duplicate else HTTP_202_ACCEPTED,
        )

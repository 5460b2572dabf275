"""POST /webhooks/fasttrack: where Fasttrack delivers."""

from litestar import Controller, Response, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import RawBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from cdp.api.docs import WebhookOperation, problem
from cdp.api.service import Service
from cdp.log import Receipt


class WebhookController(Controller):
    path = "/webhooks/fasttrack"
    tags = ["ingest"]

    @post(
        status_code=HTTP_202_ACCEPTED,
        summary="Receive a webhook",
        operation_class=WebhookOperation,
        response_description="Logged and projected: every query already reflects it",
        responses={
            200: ResponseSpec(
                Receipt,
                description="Already logged: the position of the first copy; nothing stored",
                generate_examples=False,
                examples=[
                    Example(summary="a redelivery", value={"position": 7, "duplicate": True})
                ],
            ),
            400: problem(
                "The body is not a JSON object, or nests deeper than 64 levels",
                {"detail": "body is not valid JSON: Expecting value: line 1 column 1 (char 0)"},
            ),
            413: problem(
                "The body is larger than the server takes",
                {"detail": "Request Entity Too Large"},
            ),
            422: problem(
                "The webhook is invalid: `errors` names each field; nothing stored",
                {
                    "detail": "invalid webhook: payload.session.team.id: must be an integer "
                    "or a string of digits (up to 2^63-1), got '12a'",
                    "errors": [
                        {
                            "path": "payload.session.team.id",
                            "message": "must be an integer or a string of digits (up to "
                            "2^63-1), got '12a'",
                        }
                    ],
                },
            ),
        },
    )
    async def receive(self, body: RawBody, service: NamedDependency[Service]) -> Response[Receipt]:
        """Log one webhook exactly as it arrived and project it, in one transaction.

        A body logged before (the same JSON, whatever its key order or spacing) is a
        duplicate: 200 with the first copy's position. Once this answers 202, every query
        reflects the webhook.
        """
        receipt = await service.webhooks.record(body)
        return Response(
            receipt, status_code=HTTP_200_OK if receipt.duplicate else HTTP_202_ACCEPTED
        )

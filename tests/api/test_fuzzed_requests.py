"""Schemathesis over the API's own OpenAPI schema: whatever is sent, the answer is documented.

Every operation gets requests its schema allows and requests it refuses, with an admin token
(a webhook: its source's secret), so that guarded endpoints are exercised beyond 401. No
answer may be a 5xx, an undocumented status, content type, header or body, or a 2xx to a
request the schema refuses; and afterwards the store holds exactly what was accepted.
"""

from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, select

from cdp.access import credentials
from cdp.http.app import create_app
from cdp.log import store
from cdp.log.tables import events, rejected
from cdp.settings import Settings

# Requests per operation, of each kind: about 10 s a database in all.
EXAMPLES: Final = 20
# Not positive_data_acceptance: no schema says all that makes a request valid (a phone that
# is a number, a cursor a list gave, a timestamp within the clock skew); the answer to the
# rest is a documented 400 or 422, which status_code_conformance holds it to.
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
# Deterministic answers: no rate limit that a fast run could reach.
NO_LIMITS: Final = {"webhook_rate_limit": 0, "read_rate_limit": 0, "failed_auth_rate_limit": 0}
KEPT: Final = {400, 409, 410, 413, 415, 422}


def negatable(operation: APIOperation) -> bool:
    """Can any value the operation takes be invalid? Not so of a path parameter of any text."""
    return bool(len(operation.body) or len(operation.query)) or any(
        parameter.definition["schema"] != {"type": "string"}
        for parameter in operation.path_parameters
    )


def fuzz(
    strategy: st.SearchStrategy[Case],
    answered: Callable[[Case, Response], None],
    auth: dict[str, str],
) -> None:
    """Send what `strategy` makes, with `auth` sent as the test's own: a check that took it
    for generated (as it does of an operation that takes headers) would expect a 401."""

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=strategy)
    def send(case: Case) -> None:
        response = case.call(headers=auth)
        answered(case, response)
        case.validate_response(response, checks=CHECKS)

    send()


@pytest.mark.slow
def test_every_operation_answers_as_documented_and_stores_only_what_it_accepted(
    settings: Settings, engine: Engine
) -> None:
    with engine.begin() as connection:
        secret = credentials.add_source(connection, "default").secret
        admin = credentials.create_token(connection, "fuzz", "admin")
    app = create_app(settings.model_copy(update=NO_LIMITS))
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    webhooks: list[tuple[int, dict[str, Any]]] = []

    def answered(case: Case, response: Response) -> None:
        if case.path.startswith("/webhooks/"):
            webhooks.append((response.status_code, response.json()))

    operations = [result.ok() for result in schema.get_all_operations()]
    # Erasure forgets the kept deliveries that name the customer: fuzzed once the rest is
    # accounted for.
    erase = [operation for operation in operations if operation.path.endswith("/erase")]
    assert erase, "no erasure operation in the schema"
    for operation in [*(o for o in operations if o not in erase), *erase]:
        if operation is erase[0]:
            account(engine, webhooks)
        ingest = operation.path.startswith("/webhooks/")
        headers = {"Authorization": f"Bearer {secret if ingest else admin}"}
        query = bounded(engine, operation)
        for mode in GenerationMode:
            if mode is GenerationMode.NEGATIVE and not negatable(operation):
                continue
            strategy = operation.as_strategy(mode, headers=headers, query=query)
            if "source" in operation.path_parameters:  # and sometimes the source that exists
                strategy |= operation.as_strategy(
                    mode, headers=headers, path_parameters={"source": "default"}
                )
            fuzz(strategy, answered, headers)


def bounded(engine: Engine, operation: APIOperation) -> dict[str, Any] | None:
    """The query parameters that bound an operation's answer: the event stream goes on for
    as long as the client reads it, unless it is to end at a position the log has reached."""
    if operation.path != "/events/stream":
        return None
    with engine.connect() as connection:
        return {"until": store.head(connection)}


def account(engine: Engine, webhooks: list[tuple[int, dict[str, Any]]]) -> None:
    """The log holds exactly the webhooks answered 202, the kept deliveries exactly those
    refused for their body."""
    with engine.connect() as connection:
        logged = sorted(connection.scalars(select(events.c.position)))
        # A body no erasure could read is kept as its hash, its reason saying so.
        kept = Counter(
            (row.status, row.reason.split(" (body not kept, since no erasure could read")[0])
            for row in connection.execute(select(rejected.c.status, rejected.c.reason))
        )
    accepted = sorted(answer["position"] for status, answer in webhooks if status == 202)
    assert accepted, "no webhook was accepted: the fuzzing never got past the checks"
    assert logged == accepted
    assert {answer["position"] for status, answer in webhooks if status == 200} <= set(logged)
    # A malformed query string is refused before the body is read: nothing to keep then.
    refused = Counter(
        (status, answer["detail"])
        for status, answer in webhooks
        if status in KEPT and not answer["detail"].startswith("invalid request")
    )
    assert refused, "no webhook was refused for its body: the fuzzing never reached the checks"
    assert kept == refused

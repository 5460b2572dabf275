"""The OpenAPI schema tells the truth, and its pages work with no internet access."""

import json
import re
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.factories import JSON_TYPE, samples

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def spec(client: Client) -> dict[str, Any]:
    return dict(client.get("/schema/openapi.json").json())


def operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    return value


def test_every_endpoint_has_a_summary_and_a_description(spec: dict[str, Any]) -> None:
    for name, operation in operations(spec):
        assert operation.get("summary"), name
        assert len(operation.get("description", "")) > 20, name


def test_the_webhook_body_is_documented_with_every_sample_as_an_example(
    spec: dict[str, Any], client: Client
) -> None:
    body = spec["paths"]["/webhooks/fasttrack"]["post"]["requestBody"]
    content = body["content"]["application/json"]
    assert set(content["schema"]["required"]) == {"event_type", "payload", "timestamp"}
    examples = [example["value"] for example in content["examples"].values()]
    documented = sorted(json.dumps(example, sort_keys=True) for example in examples)
    # Litestar leaves null fields out of everything in the schema, examples included.
    expected = (without_nulls(json.loads(sample)) for sample in samples())
    assert documented == sorted(json.dumps(sample, sort_keys=True) for sample in expected)
    for example in examples:  # what the docs offer to send is accepted
        answer = client.post("/webhooks/fasttrack", content=json.dumps(example), headers=JSON_TYPE)
        assert answer.status_code == 202, answer.text


def test_the_envelope_documents_the_bounds_its_validators_check(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/webhooks/fasttrack"]["post"]["requestBody"]
    envelope = body["content"]["application/json"]["schema"]["properties"]
    assert (envelope["event_type"]["minLength"], envelope["event_type"]["maxLength"]) == (1, 200)
    assert envelope["timestamp"]["minimum"] == 946_684_800_000  # 2000-01-01


def test_errors_are_documented_as_they_are_sent(spec: dict[str, Any]) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) == {"detail", "errors"}
    responses = {name: operation["responses"] for name, operation in operations(spec)}
    webhook = responses["POST /webhooks/fasttrack"]
    for status in ("400", "413", "422", "503"):
        schema = webhook[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}, status
    assert "404" in responses["GET /chats/{uuid}"]
    for name, answers in responses.items():
        assert {"400", "503"} <= set(answers), name
    assert "off-line" not in json.dumps(spec)
    assert "processing continues" not in json.dumps(spec)


def test_states_and_kinds_are_enums(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert set(schemas["TimelineItem"]["properties"]["kind"]["enum"]) >= {"handoff", "other"}
    assert schemas["Session"]["properties"]["state"]["enum"] == ["open", "idle"]
    (state,) = [
        parameter
        for parameter in spec["paths"]["/teams/{team_id}/chats"]["get"]["parameters"]
        if parameter["name"] == "state"
    ]
    assert {"open", "idle"} <= set(json.dumps(state["schema"]).replace('"', " ").split())


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger", "/schema/redoc"])
def test_the_docs_pages_load_everything_from_cdp_itself(client: Client, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    sources = re.findall(r"""(?:src|href)=["']([^"']+)""", html.text)
    assert sources
    for source in sources:
        assert source.startswith("/schema/"), source
        assert client.get(source).status_code == 200, source


def test_the_event_stream_documents_each_message_as_an_event_of_the_log(
    spec: dict[str, Any],
) -> None:
    answer = spec["paths"]["/events/stream"]["get"]["responses"]["200"]
    message = answer["content"]["text/event-stream"]["schema"]
    assert message["required"] == ["id", "event", "data"]
    data = message["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    assert data["contentSchema"] == {"$ref": "#/components/schemas/Event"}
    assert "Event" in spec["components"]["schemas"]


def test_profiles_are_searched_by_a_phone_or_a_name_and_the_docs_say_only_one(
    spec: dict[str, Any],
) -> None:
    operation = spec["paths"]["/profiles"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert not parameters["phone"]["required"]
    assert not parameters["name"]["required"]
    assert "exactly one of `phone` and `name`" in " ".join(operation["description"].split())
    assert "does not find" in parameters["name"]["description"]  # the start of the whole name

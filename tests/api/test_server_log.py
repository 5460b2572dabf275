"""The server's log: a line per request, and never a secret, a phone number or a message
text in it."""

import logging

import pytest
from litestar.testing import TestClient

Client = TestClient  # type: ignore[type-arg]
PHONE = "+7 999 123-45-67"


def test_each_request_is_one_line_with_its_path_and_never_its_query_string(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cdp.requests"):
        client.get("/profiles", params={"phone": PHONE})
        client.post("/webhooks/fasttrack", params={"token": "s3cret"}, content=b"{}")
        client.get("/no/such/route")
    lines = [record for record in caplog.records if record.name == "cdp.requests"]
    assert [line.fields["path"] for line in lines] == [  # type: ignore[attr-defined]
        "/profiles",
        "/webhooks/fasttrack",
        "/no/such/route",
    ]
    assert [line.fields["status"] for line in lines] == [200, 422, 404]  # type: ignore[attr-defined]
    assert lines[1].fields["source"] == "default"  # type: ignore[attr-defined]
    assert lines[0].getMessage().startswith('testclient "GET /profiles" 200 ')
    assert all("?" not in line.getMessage() and "s3cret" not in line.getMessage() for line in lines)

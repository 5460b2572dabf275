"""What a web page can make a browser do to the store: the Host it is addressed to, requests
that change something from another site or origin, webhooks without a Content-Type, and
the headers that keep every answer out of other sites' frames and scripts."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, func, select

from cdp.access import credentials
from cdp.http.app import create_app
from cdp.log.tables import events, rejected
from cdp.settings import Settings
from tests.factories import webhook

Client = TestClient  # type: ignore[type-arg]
JSON = {"Content-Type": "application/json"}
# What a page of another site sends with each request it makes a browser send.
ANOTHER_SITE = {"Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site"}


def body(chat: str = "chat-1", **fields: Any) -> bytes:
    fields.setdefault("profile", "profile-1")
    fields.setdefault("phone", "+79991234567")
    fields.setdefault("message", "hi")
    return json.dumps(webhook("message_created", chat=chat, **fields)).encode()


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def local(settings: Settings) -> Iterator[Client]:
    """The open store (no source, no token), as a server on 127.0.0.1:8000 answers."""
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client


def test_a_page_of_another_site_changes_nothing_in_the_open_store(
    local: Client, engine: Engine
) -> None:
    assert local.post("/webhooks/fasttrack", content=body(), headers=JSON).status_code == 202
    forged = body("chat-2", message="forged")
    for headers in (ANOTHER_SITE, {"Origin": "https://attacker.example"}, {"Origin": "null"}):
        answers = [
            local.post("/webhooks/fasttrack", content=forged, headers=headers),
            local.post("/webhooks/fasttrack", content=forged, headers={**headers, **JSON}),
            local.post("/profiles/profile-1/erase", params={"suppress": "true"}, headers=headers),
            local.post("/projections/rebuild", headers=headers),
        ]
        for answer in answers:
            assert answer.status_code == 403, answer.text
            assert "a web page may not change the store" in answer.json()["detail"]
            assert "Authorization: Bearer" in answer.json()["detail"]
    for site in ("cross-site", "same-site"):
        answer = local.post("/projections/rebuild", headers={"Sec-Fetch-Site": site})
        assert answer.status_code == 403
        assert f"Sec-Fetch-Site: {site}" in answer.json()["detail"]
    assert count(engine, events) == 1
    assert count(engine, rejected) == 0  # anyone can send those: nothing kept
    assert local.get("/profiles/profile-1").json()["phones"] == ["+79991234567"]


def test_this_servers_own_pages_and_programs_still_change_it(local: Client) -> None:
    same = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    assert local.post("/webhooks/fasttrack", content=body(), headers={**same, **JSON}).is_success
    assert local.post("/projections/rebuild", headers=same).status_code == 202
    # A page of this server whose Referrer-Policy is no-referrer (the console's) says
    # "Origin: null"; the browser still says whose it is.
    masked = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    answer = local.post("/projections/rebuild", headers=masked)
    assert answer.status_code in (202, 409), answer.text  # 409: the rebuild above still runs
    # A program: no Origin, no Sec-Fetch-Site (Fasttrack's own delivery, curl).
    assert local.post("/webhooks/fasttrack", content=body("c2"), headers=JSON).status_code == 202
    assert local.post("/profiles/profile-1/erase").status_code == 200


def test_a_bearer_token_is_let_through_whatever_the_browser_says(
    settings: Settings, engine: Engine
) -> None:
    with engine.begin() as connection:
        admin = credentials.create_token(connection, "ops", "admin")
    with TestClient(create_app(settings)) as client:
        token = {"Authorization": f"Bearer {admin}"}
        answer = client.post("/projections/rebuild", headers={**ANOTHER_SITE, **token})
        assert answer.status_code == 202, answer.text
        # Without it, the browser's word is taken first; a wrong token is the route's 401.
        assert client.post("/projections/rebuild", headers=ANOTHER_SITE).status_code == 403
        wrong = {"Authorization": "Bearer cdpt_wrong"}
        answer = client.post("/projections/rebuild", headers={**ANOTHER_SITE, **wrong})
        assert answer.status_code == 401


def test_another_host_reads_nothing(local: Client) -> None:
    assert local.post("/webhooks/fasttrack", content=body(), headers=JSON).status_code == 202
    for host in ("attacker.example", "attacker.example:8000", "10.1.2.3:8000", "127.0.0.1.nip.io"):
        answer = local.get("/profiles", params={"phone": "+79991234567"}, headers={"Host": host})
        assert answer.status_code == 421, host
        detail = answer.json()["detail"]
        assert f"does not answer for the host {host!r}" in detail
        assert "localhost, 127.0.0.1, [::1]" in detail
        assert "CDP_ALLOWED_HOSTS" in detail
        assert "79991234567" not in answer.text
    for host in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.2"):
        answer = local.get("/profiles", params={"phone": "+79991234567"}, headers={"Host": host})
        assert answer.status_code == 200, host
        assert len(answer.json()["items"]) == 1


def test_allowed_hosts_add_names(settings: Settings) -> None:
    named = settings.model_copy(
        update={"allowed_hosts": ("cdp.example.com", "api.example.com:8443")}
    )
    with TestClient(create_app(named), base_url="http://127.0.0.1:8000") as client:
        for host, status in (
            ("cdp.example.com", 200),
            ("cdp.example.com:443", 200),
            ("api.example.com:8443", 200),
            ("api.example.com", 421),
            ("api.example.com:443", 421),
            ("127.0.0.1:8000", 200),  # the address's own names stay
            ("attacker.example", 421),
        ):
            assert client.get("/health", headers={"Host": host}).status_code == status, host
        # Behind a proxy that passes on its own Host, the browser's Origin is the public name.
        behind = {"Origin": "https://cdp.example.com", "Sec-Fetch-Site": "same-origin"}
        assert client.post("/projections/rebuild", headers=behind).status_code == 202
    anything = settings.model_copy(update={"allowed_hosts": ("*",)})
    with TestClient(create_app(anything)) as client:
        assert client.get("/health", headers={"Host": "whatever.example"}).status_code == 200
        # Any Host, but still no change from another origin.
        assert client.post("/projections/rebuild", headers=ANOTHER_SITE).status_code == 403


def test_a_webhook_without_a_content_type_is_refused_and_kept(
    local: Client, engine: Engine
) -> None:
    answer = local.post("/webhooks/fasttrack", content=body())
    assert answer.status_code == 415
    assert answer.json()["detail"] == "the request has no Content-Type: send application/json"
    assert local.post(
        "/webhooks/fasttrack", content=body(), headers={"Content-Type": "text/plain"}
    ).json()["detail"] == ("Content-Type 'text/plain' is not JSON: send application/json")
    assert count(engine, events) == 0
    kept = local.get("/rejected").json()["items"]
    assert [item["status"] for item in kept] == [415, 415]
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert local.post("/webhooks/fasttrack", content=body(), headers=charset).status_code == 202


HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/profiles/nobody", 404),
        ("GET", "/no/such/page", 404),
        ("DELETE", "/health", 405),
        ("GET", "/profiles?nope=1", 400),
        ("GET", "/console/", 200),
        ("GET", "/console/static/console.css", 200),
        ("GET", "/schema", 200),
        ("GET", "/schema/redoc", 200),
        ("GET", "/schema/openapi.json", 200),
        ("GET", "/schema/assets/swagger/swagger-ui.css", 200),
        ("POST", "/projections/rebuild", 403),  # another site's
    ],
)
def test_every_answer_carries_the_security_headers(
    local: Client, method: str, path: str, status: int
) -> None:
    headers = ANOTHER_SITE if method == "POST" else {}
    answer = local.request(method, path, headers=headers)
    assert answer.status_code == status, answer.text
    for name, value in HEADERS.items():
        assert answer.headers.get(name) == value, name
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-eval'" not in policy
    script = next((part for part in policy.split(";") if "script-src" in part), "")
    assert "'unsafe-inline'" not in script
    if path.startswith(("/schema/assets/", "/console/static/")):
        assert "no-store" not in answer.headers.get("cache-control", "")
    else:
        assert answer.headers["cache-control"] == "no-store"


def test_the_schema_pages_run_no_script_of_their_own(local: Client) -> None:
    for page in ("/schema", "/schema/swagger", "/schema/redoc"):
        html = local.get(page).text
        assert "<script>" not in html.replace(" ", "")
        assert "<script src=" in html.replace("'", "").replace('"', "")
        assert "<style" not in html
        policy = local.get(page).headers["content-security-policy"]
        assert "script-src 'self';" in policy
    assert local.get("/schema/assets/cdp/swagger.js").status_code == 200
    assert local.get("/schema/assets/cdp/redoc.js").status_code == 200
    # The API's own answers are data: nothing in them may load or run.
    assert local.get("/health").headers["content-security-policy"].startswith("default-src 'none'")


def test_a_preflight_grants_no_other_origin(local: Client) -> None:
    answer = local.options(
        "/webhooks/fasttrack",
        headers={
            "Origin": "https://attacker.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-headers" not in answer.headers


def test_the_suppression_a_page_asked_for_is_not_made(local: Client, engine: Engine) -> None:
    assert local.post("/webhooks/fasttrack", content=body(), headers=JSON).status_code == 202
    answer = local.post("/profiles/profile-1/erase?suppress=true", headers=ANOTHER_SITE)
    assert answer.status_code == 403
    assert local.get("/profiles/profile-1").json()["phones"] == ["+79991234567"]
    again = body("chat-3", message="later")
    assert local.post("/webhooks/fasttrack", content=again, headers=JSON).status_code == 202

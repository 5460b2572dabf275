from litestar.testing import TestClient

from tests.factories import samples


def test_the_samples_are_accepted_and_a_repeat_is_a_duplicate(client: TestClient) -> None:  # type: ignore[type-arg]
    positions = [
        client.post("/webhooks/fasttrack", content=body).json()["position"] for body in samples()
    ]
    assert positions == [1, 2, 3, 4, 5]
    again = client.post("/webhooks/fasttrack", content=samples()[0])
    assert (again.status_code, again.json()) == (200, {"position": 1, "duplicate": True})

"""CDP_ALLOWED_HOSTS as it is read, and which Host names a server answers for by default."""

import pytest
from pydantic import ValidationError

from cdp.http.guards import Hosts
from cdp.settings import Settings


def test_allowed_hosts_are_read_comma_separated_and_written_one_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDP_ALLOWED_HOSTS", " CDP.Example.com, [::1]:8000,,localhost.:80 ")
    assert Settings().allowed_hosts == ("cdp.example.com", "[::1]:8000", "localhost:80")
    monkeypatch.setenv("CDP_ALLOWED_HOSTS", "*")
    assert Settings().allowed_hosts == ("*",)
    monkeypatch.delenv("CDP_ALLOWED_HOSTS")
    assert Settings().allowed_hosts == ()


@pytest.mark.parametrize(
    "entry", ["https://cdp.example.com", "cdp.example.com/", "a b", "x:99999", "[nope]", "x:"]
)
def test_an_allowed_host_that_is_no_host_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    monkeypatch.setenv("CDP_ALLOWED_HOSTS", f"ok.example,{entry}")
    with pytest.raises(ValidationError, match="is not a host name as clients write it in Host"):
        Settings()


@pytest.mark.parametrize(
    ("server", "admitted", "refused"),
    [
        (("127.0.0.1", 8000), ["localhost", "127.0.0.1", "127.9.9.9", "::1"], ["10.0.0.1", "a.b"]),
        (("::1", 8000), ["localhost", "127.0.0.1", "::1"], ["attacker.example"]),
        (("10.0.0.5", 8000), ["10.0.0.5"], ["localhost", "10.0.0.6", "cdp.example.com"]),
        (("::ffff:10.0.0.5", 8000), ["10.0.0.5"], ["10.0.0.6"]),
        (("0.0.0.0", 8000), ["10.0.0.5", "localhost", "fe80::1"], ["cdp.example.com"]),
        (None, ["localhost", "127.0.0.1"], ["10.0.0.5", "attacker.example"]),  # a Unix socket
        (("/run/cdp.sock", None), ["localhost"], ["attacker.example"]),
    ],
)
def test_by_default_the_names_of_the_address_the_server_listens_on(
    server: object, admitted: list[str], refused: list[str]
) -> None:
    hosts = Hosts(())
    for name in admitted:
        assert hosts.admits(name, 8000, server), name
        assert hosts.admits(name, None, server), name  # whatever the port
    for name in refused:
        assert not hosts.admits(name, 8000, server), name


def test_an_origin_is_ours_when_it_is_the_host_asked_for_or_a_name_given() -> None:
    hosts = Hosts(("cdp.example.com",))
    assert hosts.same_origin("http://127.0.0.1:8000", ("127.0.0.1", 8000))
    assert hosts.same_origin("https://cdp.example.com", ("127.0.0.1", 8000))
    assert hosts.same_origin("https://h.example", ("h.example", None))
    assert hosts.same_origin("http://h.example:80", ("h.example", None))
    for origin in (
        "http://localhost:8000",  # another origin, though the same machine
        "http://127.0.0.1:9000",
        "https://127.0.0.1:8000.attacker.example",
        "null",
        "file://",
        "http://user@127.0.0.1:8000",
    ):
        assert not hosts.same_origin(origin, ("127.0.0.1", 8000)), origin

"""cdp source and cdp token: secrets shown once, kept as digests; serve's safe defaults."""

import re

from sqlalchemy import select

from cdp.access import credentials
from cdp.access.tables import sources, tokens
from cdp.db import make_engine
from tests.cli.test_commands import cdp


def test_a_source_is_added_listed_rotated_and_removed(database: str) -> None:
    added = cdp(database, "source", "add", "shop", "--signed")
    assert added.exit_code == 0, added.output
    secret = re.search(r"secret: (cdps_\S+)", added.output)
    assert secret is not None
    assert "signing key: whsec_" in added.output
    assert f"/webhooks/fasttrack/shop?token={secret.group(1)}" in added.output
    engine = make_engine(database)
    with engine.connect() as connection:
        stored = connection.execute(select(sources)).one()
    assert stored.secret_digest == credentials.digest(secret.group(1))
    assert secret.group(1) not in str(stored)
    assert "shop" in cdp(database, "source", "list").output
    assert "signed" in cdp(database, "source", "list").output

    again = cdp(database, "source", "add", "shop")
    assert again.exit_code == 1
    assert "exists already" in again.output

    rotated = cdp(database, "source", "rotate", "shop", "--grace", "0")
    assert rotated.exit_code == 0
    with engine.connect() as connection:
        ring = credentials.load(connection)
    assert not ring.admits("shop", secret.group(1), 0)
    new = re.search(r"secret: (cdps_\S+)", rotated.output)
    assert new is not None
    assert ring.admits("shop", new.group(1), 0)

    assert cdp(database, "source", "remove", "shop").exit_code == 0
    assert "no sources" in cdp(database, "source", "list").output
    missing = cdp(database, "source", "remove", "shop")
    assert missing.exit_code == 1
    assert "no source 'shop'" in missing.output
    engine.dispose()


def test_a_bad_source_name_is_refused_with_what_is_allowed(database: str) -> None:
    result = cdp(database, "source", "add", "Shop/1")
    assert result.exit_code == 1
    assert "source name 'Shop/1' is not valid: 1 to 64 of a-z, 0-9, _ and -" in result.output


def test_tokens_are_created_listed_and_revoked_by_name(database: str) -> None:
    made = cdp(database, "token", "create", "--role", "read")
    assert made.exit_code == 0, made.output
    assert "token read-1 (read): cdpt_" in made.output
    assert "token read-2 (read)" in cdp(database, "token", "create", "--role", "read").output
    assert cdp(database, "token", "create", "--role", "admin", "--name", "ops").exit_code == 0
    listed = cdp(database, "token", "list").output
    assert [line.split("\t")[:2] for line in listed.splitlines()] == [
        ["ops", "admin"],
        ["read-1", "read"],
        ["read-2", "read"],
    ]
    secret = made.output.split(": ")[1].split()[0]
    engine = make_engine(database)
    with engine.connect() as connection:
        digests = connection.execute(select(tokens.c.digest)).scalars().all()
    assert credentials.digest(secret) in digests
    assert cdp(database, "token", "revoke", "read-1").exit_code == 0
    assert "read-1" not in cdp(database, "token", "list").output
    with engine.connect() as connection:
        assert credentials.load(connection).caller(secret) is None
    engine.dispose()


def test_serve_refuses_a_public_address_while_the_api_is_open(database: str) -> None:
    result = cdp(database, "serve", "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert "refusing to listen on 0.0.0.0: the API is open" in result.output
    assert "cdp source add default" in result.output
    assert "cdp token create --role admin" in result.output
    cdp(database, "source", "add", "default")
    half = cdp(database, "serve", "--host", "0.0.0.0")
    assert half.exit_code == 1
    assert "queries need no token" in half.output
    assert "webhooks need no secret" not in half.output

"""Erased means gone from the disk: once an erasure returns, nothing the store keeps (the
databases' files, their write-ahead logs and freed pages, PostgreSQL's WAL segments, the
key file) holds the erased key, or anything that unwraps it.

The attack: post a chat's webhooks with a name, a phone and a text; erase the profile;
post many other webhooks; copy every file; look for the destroyed key, and try every
32-byte window of the files that hold keys (the keystore's, the key file) as the key on
the erased sealed rows and as the key-encryption key on the destroyed key's wrapped form.
And the customer's values: in no file in the clear, before the erasure as after it.
"""

import json
import shutil
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from litestar.testing import TestClient
from sqlalchemy import Connection, Engine, create_engine, make_url, select, text

from cdp import db
from cdp.http.app import create_app
from cdp.log.tables import events
from cdp.privacy import erasure, keyfile, personal
from cdp.privacy.keystore import KeyFileMismatch, Keystore
from cdp.privacy.tables import key_buckets, keys
from cdp.projections import registry
from cdp.settings import Settings
from tests.factories import JSON_TYPE, PAST, opened, webhook

Client = TestClient  # type: ignore[type-arg]

# Values no other test posts: PostgreSQL's WAL is the whole server's, its other databases'
# (other test processes) included.
PHONE, NAME, TEXT = "+79994455661", "Ангелина Дисковая", "my card is 5469 0011 2233"
PROFILE, CHAT = "profile-erased", "chat-erased"
OTHERS = 300  # webhooks posted after the erasure, each of a chat of its own


def _attacked(settings: Settings) -> list[dict[str, object]]:
    personal_data = {"profile": PROFILE, "phone": PHONE, "name": NAME}
    said = webhook("message_created", chat=CHAT, at=PAST + 1000, message=TEXT, **personal_data)
    said["payload"]["message"]["uuid"] = "m-erased"  # an id, in the clear: not the text
    return [*opened(CHAT, at=PAST, team=1, **personal_data), said]


def _post(client: Client, *bodies: dict[str, object]) -> None:
    for body in bodies:
        answer = client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        assert answer.status_code == 202, answer.text


class Target:
    """What an attacker needs: the erased chat's key, its wrapped form and the KEK that
    wrapped it, as they were before the erasure; and a sealed row to try keys on."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        keystore = Keystore.at(settings.keystore(), key_file=settings.key_path())
        subject = personal.of_chat(CHAT)
        with engine.connect() as main:
            with keystore.connect(main) as connection:
                row = connection.execute(
                    select(keys.c.id, keys.c.material, keys.c.bucket).where(
                        keys.c.subject == subject
                    )
                ).one()
            self.key = keystore.materials(main, [row.id])[row.id]
        keystore.dispose()
        self.key_id, self.wrapped, self.bucket = row.id, row.material, row.bucket
        head = keyfile.header(self.wrapped)
        assert head is not None
        assert head[0] == self.bucket
        kek = keystore.key_file(engine).kek(*head)
        assert kek is not None
        self.kek = kek
        assert len(self.key) == 32
        assert self.wrapped.find(self.key) < 0
        with engine.connect() as connection:
            found = connection.execute(
                select(events.c.sealed, events.c.dedupe_key).where(events.c.chat_uuid == CHAT)
            ).first()
        assert found is not None
        self.sealed, self.dedupe_key = found.sealed, found.dedupe_key
        assert personal.unseal(self.key, self.sealed, self.dedupe_key) is not None

    def opens(self, window: bytes) -> bool:
        """Does `window`, as the data key, open the sealed row?"""
        return personal.unseal(window, self.sealed, self.dedupe_key) is not None

    def unwraps(self, window: bytes) -> bool:
        """Does `window`, as a key-encryption key, unwrap the destroyed key?"""
        return keyfile.unwrap(AESGCM(window), self.key_id, self.wrapped) is not None


def windows(data: bytes) -> Iterator[bytes]:
    """Every 32-byte window of `data`, each distinct one once."""
    seen: set[bytes] = set()
    for at in range(len(data) - 31):
        window = data[at : at + 32]
        if window not in seen:
            seen.add(window)
            yield window


def found_key(target: Target, files: Iterable[tuple[str, bytes]]) -> list[str]:
    """The files some 32-byte window of which opens the sealed row or unwraps the key."""
    hits = []
    for name, data in files:
        for window in windows(data):
            try:
                if target.opens(window) or target.unwraps(window):
                    hits.append(name)
                    break
            except (InvalidTag, ValueError):
                continue
    return hits


@pytest.fixture
def own(settings: Settings, tmp_path: Path) -> Settings:
    """The store under attack, its key file in the test's own directory."""
    return settings.model_copy(update={"key_file": tmp_path / "store.kek"})


@pytest.mark.slow
def test_an_erased_key_is_nowhere_on_disk_once_the_erasure_returns(
    own: Settings, engine: Engine, tmp_path: Path
) -> None:
    started = datetime.now().astimezone() - timedelta(seconds=1)
    with TestClient(create_app(own)) as client:
        _post(client, *_attacked(own))
        target = Target(own, engine)
        before = own.key_path()
        assert before is not None
        kept_before = tmp_path / "before.kek"
        shutil.copy(before, kept_before)  # a copy of the key file made before the erasure
        erased = client.post(f"/profiles/{PROFILE}/erase")
        assert erased.status_code == 200, erased.text
        assert erased.json()["keys_destroyed"] == 1
        _post(
            client,
            *(
                webhook("message_created", chat=f"other-{n}", at=PAST + n, message=f"hi {n}")
                for n in range(OTHERS)
            ),
        )
        assert NAME not in json.dumps(client.get(f"/events?chat_uuid={CHAT}").json())
    backend = make_url(own.database_url).get_backend_name()
    if backend == "sqlite":
        every, holding_keys = _sqlite_files(tmp_path)
    else:
        every, holding_keys = _postgres_files(own.database_url, started)
    every.append(("key file", Path(before).read_bytes()))
    holding_keys.append(("key file", Path(before).read_bytes()))
    # The scan reads what an attacker would: the live keys' wrapped forms are there ...
    assert any(_wrapped(own, engine, "other-0") in data for _, data in holding_keys)
    # ... and the copy of the key file made before the erasure unwraps it.
    assert found_key(target, [("key file before", kept_before.read_bytes())]) == ["key file before"]
    assert [name for name, data in every if target.key in data] == []
    assert [name for name, data in every if target.kek in data] == []
    assert found_key(target, holding_keys) == []


def _wrapped(settings: Settings, engine: Engine, chat: str) -> bytes:
    """The chat's key as the keystore holds it."""
    keystore = Keystore.at(settings.keystore(), key_file=settings.key_path())
    try:
        with engine.connect() as main, keystore.connect(main) as connection:
            query = select(keys.c.material).where(keys.c.subject == personal.of_chat(chat))
            material: bytes = connection.execute(query).scalar_one()
    finally:
        keystore.dispose()
    return material


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_on_sqlite_no_file_holds_the_erased_customers_data_once_the_erasure_returns(
    own: Settings, tmp_path: Path
) -> None:
    """Not the sealed log alone: the read models' rows of the customer (its name, phone,
    message texts), sealed, are in no file of the store in the clear, before the erasure
    as after it, neither in the database's freed space nor in its write-ahead log."""
    forms = [
        form
        for value in (NAME, PHONE, TEXT, PHONE.removeprefix("+"))
        for form in (value.encode(), json.dumps(value).strip('"').encode())
    ]
    with TestClient(create_app(own)) as client:
        _post(client, *_attacked(own))
        assert client.get(f"/chats/{CHAT}").json()["name"] == NAME
        every, _ = _sqlite_files(tmp_path)
        assert any(CHAT.encode() in data for _, data in every)  # the scan reads what is there
        assert [(name, form) for name, data in every for form in forms if form in data] == []
        erased = client.post(f"/profiles/{PROFILE}/erase")
        assert erased.status_code == 200, erased.text
        every, _ = _sqlite_files(tmp_path)
    assert [(name, form) for name, data in every for form in forms if form in data] == []


TITLE = "Order 7731 for Ангелина Дисковая"


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_on_postgresql_no_file_ever_holds_the_customers_data_in_the_clear(
    own: Settings, tmp_path: Path
) -> None:
    """PostgreSQL never overwrites what it deletes: a row's old versions stay in its
    table's pages and in WAL segments until reused. So the read models keep a customer's
    values sealed under the chat's key from the first write, and a delivery refused as bad
    input is kept sealed under a key of its own: before the erasure as after it, no
    relation file of the database (tables, indexes, TOAST) and no WAL segment holds the
    name, the phone, the message or the session's title, while the API still answers
    them, and finds the customer by phone and name."""
    started = datetime.now().astimezone() - timedelta(seconds=1)
    personal_data = {"profile": PROFILE, "phone": PHONE, "name": NAME}
    bodies = [*opened(CHAT, at=PAST, team=1, title=TITLE, **personal_data), *_attacked(own)[2:]]
    forms = [form for value in (NAME, PHONE, PHONE[1:], TEXT, TITLE) for form in _forms(value)]
    refused = json.loads(json.dumps(bodies[-1]))
    refused["payload"]["chat"]["uuid"] = f"{CHAT} "  # a trailing space: 422, kept
    with TestClient(create_app(own)) as client:
        _post(client, *bodies)
        answer = client.post("/webhooks/fasttrack", content=json.dumps(refused), headers=JSON_TYPE)
        assert answer.status_code == 422, answer.text
        (kept,) = client.get("/rejected").json()["items"]
        assert TEXT in kept["body"]
        timeline = client.get(f"/chats/{CHAT}/timeline").json()["items"]
        assert TEXT in [item["message"]["text"] for item in timeline if item["message"]]
        chat = client.get(f"/chats/{CHAT}").json()
        assert (chat["name"], chat["phone"], chat["session"]["title"]) == (NAME, PHONE, TITLE)
        for search in ({"phone": PHONE}, {"name": NAME[:4]}):
            found = client.get("/profiles", params=search).json()["items"]
            assert [profile["uuid"] for profile in found] == [PROFILE], search
        every = _postgres_relations(own.database_url) + _postgres_wal(own.database_url, started)
        assert [(name, form) for name, data in every for form in forms if form in data] == []
        erased = client.post(f"/profiles/{PROFILE}/erase")
        assert erased.status_code == 200, erased.text
        chat = client.get(f"/chats/{CHAT}").json()
        assert (chat["name"], chat["phone"], chat["session"]["title"]) == (None, None, None)
        assert client.get("/rejected").json()["items"] == []
    every = _postgres_relations(own.database_url) + _postgres_wal(own.database_url, started)
    assert [(name, form) for name, data in every for form in forms if form in data] == []


def _forms(value: str) -> list[bytes]:
    """How a text may be written: as UTF-8, and as in JSON with its non-ASCII escaped."""
    return [value.encode(), json.dumps(value).strip('"').encode()]


def _postgres_relations(url: str) -> list[tuple[str, bytes]]:
    """After a CHECKPOINT, every relation file of the database (read as a superuser)."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("CHECKPOINT"))
            paths = connection.execute(
                text(
                    "SELECT relname, pg_relation_filepath(oid) FROM pg_class"
                    " WHERE relkind IN ('r', 'i', 't') AND relnamespace <> 11"
                    " AND relfilenode <> 0 AND relpersistence = 'p'"
                )
            ).all()
            return [(name, _read(connection, path)) for name, path in paths if path]
    finally:
        admin.dispose()


def _postgres_wal(url: str, since: datetime) -> list[tuple[str, bytes]]:
    """Every WAL segment written since `since`."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            segments = connection.execute(
                text("SELECT name FROM pg_ls_waldir() WHERE modification >= :since ORDER BY name"),
                {"since": since},
            ).scalars()
            return [(f"pg_wal/{name}", _read(connection, f"pg_wal/{name}")) for name in segments]
    finally:
        admin.dispose()


def _sqlite_files(directory: Path) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """Every database file (as a file backup copies `*.db*`); and those of the keystore."""
    every = [(path.name, path.read_bytes()) for path in sorted(directory.glob("*.db*"))]
    assert {"cdp.db", "cdp-keys.db"} <= {name for name, _ in every}
    return every, [(name, data) for name, data in every if name.startswith("cdp-keys.db")]


def _postgres_files(
    url: str, since: datetime
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """After VACUUM of the keystore's tables and a CHECKPOINT, as a superuser reads them
    through pg_read_binary_file: the relation files of the keystore's tables (their dead
    tuples and free space included), and every WAL segment written since `since`."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("VACUUM keys"))
            connection.execute(text("VACUUM key_buckets"))
            connection.execute(text("CHECKPOINT"))
            relations = [
                (table, _read(connection, path))
                for table in ("keys", "key_buckets", "ix_keys_bucket_generation", "pk_keys")
                if (path := connection.scalar(text(f"SELECT pg_relation_filepath('{table}')")))
            ]
            segments = connection.execute(
                text("SELECT name FROM pg_ls_waldir() WHERE modification >= :since ORDER BY name"),
                {"since": since},
            ).scalars()
            wal = [(f"pg_wal/{name}", _read(connection, f"pg_wal/{name}")) for name in segments]
    finally:
        admin.dispose()
    assert wal, "no WAL segment was written during the test"
    return [*relations, *wal], list(relations)


def _read(connection: Connection, path: str) -> bytes:
    data = connection.scalar(text("SELECT pg_read_binary_file(:path)"), {"path": path})
    return bytes(data)


def test_a_key_file_of_another_store_is_refused_at_start(
    own: Settings, engine: Engine, tmp_path: Path
) -> None:
    """Keys wrapped under one key file do not open under another: what every start runs
    first says so, naming the file, rather than let webhooks be sealed that no process
    could read. The store's own file still opens them."""
    with TestClient(create_app(own)) as client:
        _post(client, *_attacked(own))
    other = tmp_path / "other.kek"
    keyfile.KeyFile(other).generation(0)  # another store's key file, made as it first ran
    assert other.exists()
    wrong = Keystore.at(own.keystore(), key_file=other)
    right = Keystore.at(own.keystore(), key_file=own.key_path())
    try:
        with pytest.raises(KeyFileMismatch, match=f"key file {other} does not unwrap"):
            erasure.reconcile(engine, wrong, registry.projectors(own))
        erasure.reconcile(engine, right, registry.projectors(own))
    finally:
        wrong.dispose()
        right.dispose()


def test_an_erasure_stopped_before_its_key_file_was_written_is_finished_by_the_next_start(
    own: Settings, engine: Engine
) -> None:
    """Stopped after destroying a key (its bucket stale), or after wrapping the bucket
    anew but before overwriting the last KEK in the file: the next start finishes it, and
    the key file no longer holds the KEK that wrapped the destroyed key."""
    with TestClient(create_app(own)) as client:
        _post(client, *_attacked(own))
        _post(client, webhook("message_created", chat="other", at=PAST, message="hi"))
    target = Target(own, engine)
    keystore = Keystore.at(own.keystore(), key_file=own.key_path())
    try:
        with db.writing(engine) as main:  # an erasure's step, stopped before rotate()
            keystore.destroy(main, PROFILE, [personal.of_chat(CHAT)], 1, suppress=False)
        with db.writing(engine) as main:  # and half of rotate(): never written to the file
            stale = select(key_buckets.c.bucket).where(key_buckets.c.stale)
            with keystore.connect(main) as held:
                assert held.scalars(stale).all() == [target.bucket]
            keystore.rotate(main, 1_000)
    finally:
        keystore.dispose()
    path = own.key_path()
    assert path is not None
    assert target.kek in path.read_bytes()
    with TestClient(create_app(own)) as client:
        assert client.get("/events?chat_uuid=other").json()["items"][0]["body"]["payload"]
    assert target.kek not in path.read_bytes()
    assert found_key(target, [("key file", path.read_bytes())]) == []


def _same_bucket(subject: str, count: int) -> list[str]:
    """`count` chat ids whose keys fall in the bucket of `subject`'s."""
    bucket = keyfile.bucket_of(subject)
    return [
        chat
        for chat in (f"n-{n}" for n in range(1_000_000))
        if keyfile.bucket_of(personal.of_chat(chat)) == bucket
    ][:count]


def test_a_bucket_is_wrapped_anew_a_few_keys_a_transaction_and_its_kek_overwritten_last(
    own: Settings, engine: Engine
) -> None:
    """The keys of an erased customer's bucket are wrapped anew a bounded number at a time
    (the append lock is held that long, however many keys the store has). Between two
    steps every other key of the bucket still opens, whichever generation it is wrapped
    under, and a webhook takes a key under the new one; the KEK that wrapped the
    destroyed key leaves the key file only once the last key is wrapped anew."""
    *neighbours, late_chat = _same_bucket(personal.of_chat(CHAT), 8)
    late = personal.of_chat(late_chat)
    bodies = [
        *_attacked(own),
        *(webhook("message_created", chat=chat, at=PAST, message=chat) for chat in neighbours),
    ]
    with TestClient(create_app(own)) as client:
        _post(client, *bodies)
    target = Target(own, engine)
    path = own.key_path()
    assert path is not None
    keystore = Keystore.at(own.keystore(), key_file=path)

    def neighbours_open() -> dict[str, bool]:
        with engine.connect() as main, keystore.connect(main) as connection:
            ids = dict(
                connection.execute(
                    select(keys.c.subject, keys.c.id).where(
                        keys.c.subject.in_([personal.of_chat(chat) for chat in neighbours])
                    )
                ).all()
            )
            opened = keystore.materials(main, list(ids.values()))
        return {subject: len(opened[key_id]) == 32 for subject, key_id in ids.items()}

    def made_wrapped(key_id: str) -> bytes:
        with engine.connect() as main, keystore.connect(main) as connection:
            return bytes(
                connection.execute(select(keys.c.material).where(keys.c.id == key_id)).one()[0]
            )

    was = keyfile.header(target.wrapped)
    assert was is not None
    following = (target.bucket, was[1] + 1)  # the bucket's next generation
    try:
        with db.writing(engine) as main:
            keystore.destroy(main, PROFILE, [personal.of_chat(CHAT)], 1, suppress=False)
        steps = []
        while True:
            with db.writing(engine) as main:
                step = keystore.rotate(main, 3)
            keystore.advance(engine, step.done)
            steps.append(step)
            assert all(neighbours_open().values())
            if not step.more:
                break
            assert target.kek in path.read_bytes()  # some keys still need it
            if len(steps) == 1:  # a key made between two steps: under the new generation
                with db.writing(engine) as main:
                    (made,) = keystore.ring(main, [late], keystore.known(main, [late], [])).values()
                head = keyfile.header(made_wrapped(made.id))
                assert head == following
    finally:
        keystore.dispose()
    assert len(steps) >= 3  # 7 keys, 3 a step
    assert [step.done for step in steps[:-1]] == [[]] * (len(steps) - 1)
    assert steps[-1].done == [following]
    assert target.kek not in path.read_bytes()
    assert found_key(target, [("key file", path.read_bytes())]) == []
    with TestClient(create_app(own)) as client:
        for chat in neighbours:
            items = client.get(f"/events?chat_uuid={chat}").json()["items"]
            assert [item["body"]["payload"]["message"]["text"] for item in items][:1] == [chat]


def test_a_keystore_restored_from_before_an_erasure_loses_its_bucket_but_takes_webhooks(
    own: Settings, engine: Engine, tmp_path: Path
) -> None:
    """A keystore of its own restored from a copy older than an erasure holds keys wrapped
    under KEKs the key file is past: their bodies cannot be opened any more (the price of
    an erasure that holds on disk), and a chat among them gets a new key for what comes."""
    keys_db = tmp_path / "keys.db"
    live = own.model_copy(update={"keystore_url": f"sqlite:///{keys_db}"})
    neighbour = next(  # a chat whose key shares the erased chat's bucket
        f"n-{n}"
        for n in range(100_000)
        if keyfile.bucket_of(personal.of_chat(f"n-{n}"))
        == keyfile.bucket_of(personal.of_chat(CHAT))
    )
    said = webhook("message_created", chat=neighbour, at=PAST, message="first")
    with TestClient(create_app(live)) as client:
        _post(client, *_attacked(live), said)
    shutil.copy(keys_db, tmp_path / "keys-backup.db")
    with TestClient(create_app(live)) as client:
        assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
        assert client.get(f"/events?chat_uuid={neighbour}").json()["items"][0]["erased"] is False
    shutil.copy(tmp_path / "keys-backup.db", keys_db)
    later = webhook("message_created", chat=neighbour, at=PAST + 1, message="second")
    with TestClient(create_app(live)) as client:
        _post(client, later)
        items = client.get(f"/events?chat_uuid={neighbour}").json()["items"]
    assert [item["unreadable"] is not None for item in items] == [True, False]
    assert items[1]["body"]["payload"]["message"]["text"] == "second"


def test_keys_an_older_keystore_of_its_own_holds_are_wrapped_when_it_is_opened(
    own: Settings, engine: Engine, tmp_path: Path
) -> None:
    """A keystore of its own made before keys were wrapped (no bucket, keys as they are):
    its keys are wrapped under the key file the first time cdp opens it, and still open."""
    keys_db = tmp_path / "old-keys.db"
    old = create_engine(f"sqlite:///{keys_db}")
    material = personal.new_key()
    with old.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE keys (id VARCHAR(32) PRIMARY KEY, subject VARCHAR(210) UNIQUE "
                "NOT NULL, material BLOB NOT NULL, created_at BIGINT NOT NULL)"
            )
        )
        connection.execute(
            text("INSERT INTO keys VALUES ('k1', 'chat:old', :material, 1)"),
            {"material": material},
        )
    old.dispose()
    keystore = Keystore.at(f"sqlite:///{keys_db}", key_file=own.key_path())
    try:
        with engine.connect() as main:
            assert keystore.materials(main, ["k1"]) == {"k1": material}
    finally:
        keystore.dispose()
    assert material not in b"".join(path.read_bytes() for path in tmp_path.glob("old-keys.db*"))

"""The keys that seal personal data in the log, and the record of whose were destroyed.

The keystore is the main database (CDP_KEYSTORE_URL unset on PostgreSQL) or a database of
its own (the default beside a SQLite file): then a backup of the main database holds no
key, and restoring one taken before an erasure cannot bring the erased data back.

No key is written to a database as it is: each is wrapped under the key-encryption key
(KEK) of its bucket, which lives in the key file, outside every database (see
cdp.privacy.keyfile). An erasure deletes the keys it destroys, then wraps the other keys of
their buckets anew under each bucket's next generation and overwrites the last one in
the file: whatever a database still holds of a destroyed key (a dead tuple, a WAL
segment, a freed page) is wrapped under a KEK that exists no more.

Every change to keys happens under the log's append lock, so no webhook is sealed with a
key that an erasure is destroying, and no key is made under a generation that is being
replaced. A keystore of its own commits before the main database does: a failure in
between leaves at most an unused key, or an erasure that `cdp.privacy.erasure.reconcile`
finishes.
"""

import logging
import secrets
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Select,
    Table,
    bindparam,
    cast,
    delete,
    insert,
    inspect,
    null,
    select,
    text,
    union_all,
    update,
)

from cdp import db
from cdp.privacy import keyfile, personal
from cdp.privacy.keyfile import KeyFile
from cdp.privacy.tables import erased_subjects, key_buckets, keys
from cdp.times import now_ms

logger = logging.getLogger("cdp.keystore")

TABLES: Final = (keys, erased_subjects, key_buckets)
# Keys that check() tries to unwrap.
_CHECKED: Final = 16


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    material: bytes


class KeyFileMismatch(Exception):
    """A live key the key file cannot unwrap: the wrong CDP_KEY_FILE, or a keystore
    restored from a backup older than an erasure since which its bucket moved on."""


class Keystore:
    """Where the keys are: in the main database (`engine` None) or in one of their own; and
    the key file that wraps them (by default the one beside the main database, see
    keyfile.default_path)."""

    def __init__(self, engine: Engine | None = None, key_file: Path | None = None) -> None:
        self.engine = engine
        self._ready = engine is None
        self._key_file = None if key_file is None else KeyFile(key_file)
        self._files: dict[str, KeyFile] = {}
        self._files_lock = threading.Lock()

    @classmethod
    def at(
        cls,
        url: str | None,
        *,
        key_file: Path | None = None,
        connections: int = 2,
        wait: timedelta = timedelta(seconds=30),
        synchronous: str = "full",
    ) -> "Keystore":
        """The keystore at `url`, or in the main database when None; a server gives it as
        many connections as the main database, since each read may open keys. A keystore
        of its own on SQLite commits as durably as `synchronous` says (see db.SYNCHRONOUS):
        a key lost to a power cut would leave the webhooks it sealed unreadable; and
        overwrites what it deletes (secure_delete). `key_file`: CDP_KEY_FILE."""
        if url is None:
            return cls(None, key_file)
        engine = db.make_engine(url, connections=connections, wait=wait, synchronous=synchronous)
        return cls(engine, key_file)

    @property
    def apart(self) -> bool:
        return self.engine is not None

    def describe(self) -> str:
        if self.engine is None:
            return "the main database"
        return self.engine.url.render_as_string(hide_password=True)

    def key_file(self, main: Connection | Engine) -> KeyFile:
        """The key file of the store whose main database `main` is on."""
        if self._key_file is not None:
            return self._key_file
        url = main.engine.url
        name = url.render_as_string(hide_password=True)
        with self._files_lock:
            found = self._files.get(name)
            if found is None:
                found = self._files[name] = KeyFile(keyfile.default_path(url))
            return found

    @contextmanager
    def connect(self, main: Connection, *, write: bool = False) -> Iterator[Connection]:
        """A connection to the keystore: `main` itself (in its transaction), or one of its
        own; with `write`, in a transaction of its own that commits when the block ends."""
        if self.engine is None:
            yield main
            return
        self._create(main)
        if write:
            with db.writing(self.engine) as connection:
                yield connection
        else:
            with self.engine.connect() as connection:
                yield connection

    def _create(self, main: Connection) -> None:
        """A keystore of its own holds only the keystore's tables, made on first use; one
        made by an older version gets its keys wrapped (see _wrap_bare)."""
        if not self._ready:
            assert self.engine is not None
            with db.writing(self.engine) as connection:
                if inspect(connection).has_table(keys.name):
                    columns = {c["name"] for c in inspect(connection).get_columns(keys.name)}
                    for column, kind in (("bucket", "INTEGER"), ("generation", "BIGINT")):
                        if column not in columns:
                            connection.execute(text(f"ALTER TABLE keys ADD COLUMN {column} {kind}"))
                for table in TABLES:
                    table.create(connection, checkfirst=True)
                for index in keys.indexes:
                    index.create(connection, checkfirst=True)
                wrapped = _wrap_bare(connection, self.key_file(main))
            if wrapped:
                logger.info("wrapped %d keys under the key file", wrapped)
                self.checkpoint()
            self._ready = True

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def materials(self, main: Connection, ids: Collection[str]) -> dict[str, bytes]:
        """The key material of those of `ids` not destroyed (b"", which opens nothing, for
        one that the key file does not unwrap)."""
        if not ids:
            return {}
        with self.connect(main) as connection:
            rows = _MATERIALS.rows(connection, {"ids": list(ids)})
        file = self.key_file(main)
        found, behind, ahead = _opened(file, rows)
        if behind:  # read before an erasure moved their buckets on: read them again, anew
            with self._fresh(main) as connection:
                again = _MATERIALS.rows(connection, {"ids": behind})
            opened, still, later = _opened(file, again)
            found.update(opened)
            found.update({key_id: b"" for key_id in still})  # the keystore is behind the file
            ahead |= later
        if ahead:  # moved on by a process whose copy of the key file this one is not
            with self._fresh(main) as connection:
                wrapped = _GENERATIONS.rows(connection, {"buckets": sorted(ahead)})
            file.advance_all((row["bucket"], row["wrapped"]) for row in wrapped)
        return found

    def sealers(
        self, main: Connection, chat_uuids: Collection[str]
    ) -> dict[str, personal.Sealer | None]:
        """What opens each chat's values in the read models (see personal.Sealer): None
        for a chat whose key was destroyed, or that has none."""
        if not chat_uuids:
            return {}
        subjects = {personal.of_chat(uuid): uuid for uuid in chat_uuids}
        with self.connect(main) as connection:
            ids = _IDS_OF.rows(connection, {"subjects": list(subjects)})
        materials = self.materials(main, [row["id"] for row in ids])
        found = {subjects[row["subject"]]: materials.get(row["id"]) for row in ids}
        return {uuid: personal.sealer(found.get(uuid), uuid) for uuid in chat_uuids}

    @contextmanager
    def _fresh(self, main: Connection) -> Iterator[Connection]:
        """A connection that sees what was committed last, whatever `main` saw before."""
        engine = self.engine if self.engine is not None else main.engine
        with engine.connect() as connection:
            yield connection

    def known(self, main: Connection, subjects: Collection[str], named: Collection[str]) -> "Known":
        """Under the append lock: the keys of `subjects` (wrapped), and which of `named`
        (the subjects a batch names) were erased (see Known). In the main database's round
        trip instead, when the keystore is in it: see knowing()."""
        with self.connect(main) as connection:
            values = {"subjects": list(subjects), "named": list(named)}
            return known_of(_KNOWN.rows(connection, values))

    def ring(self, main: Connection, subjects: Collection[str], known: "Known") -> dict[str, Key]:
        """Under the append lock: the key of each of `subjects`, unwrapped, made for those
        `known` has none of; only for webhooks about to be logged, so none is made for one
        refused."""
        file = self.key_file(main)
        ring, lost = {}, []
        for subject in subjects:
            held = known.keys.get(subject)
            if held is None:
                continue
            material = _unwrapped(file, subject, held)
            if material is None:
                lost.append(held.id)
            else:
                ring[subject] = Key(held.id, material)
        if missing := [subject for subject in subjects if subject not in ring]:
            created = now_ms()
            made = {subject: Key(secrets.token_hex(16), personal.new_key()) for subject in missing}
            with self.connect(main, write=True) as connection:
                if lost:
                    connection.execute(
                        delete(keys).where(db.any_of(keys.c.id, "ids")), {"ids": lost}
                    )
                buckets = {subject: keyfile.bucket_of(subject) for subject in missing}
                generations = _current(connection, file, set(buckets.values()))
                rows = []
                for subject, key in made.items():
                    bucket = buckets[subject]
                    generation = generations[bucket]
                    kek = file.kek(bucket, generation)
                    assert kek is not None  # _current brought the file to it
                    rows.append(
                        {
                            "id": key.id,
                            "subject": subject,
                            "material": keyfile.wrap(kek, bucket, generation, key.id, key.material),
                            "created_at": created,
                            "bucket": bucket,
                            "generation": generation,
                        }
                    )
                _ADD.run(connection, rows)
            ring.update(made)
        return ring

    def fresh(self, main: Connection, subjects: Collection[str]) -> dict[str, Key]:
        """Under the append lock: a new key for each of `subjects`, none of which has one."""
        return self.ring(main, subjects, Known({}, set(), {}))

    def discard(self, main: Connection, ids: Collection[str]) -> None:
        """Delete the keys of `ids` (of kept deliveries forgotten: erased, expired, or
        moved into the log) and mark their buckets stale, as destroy() does: the next
        rotate() (an erasure's last step) overwrites the KEK that wrapped them. What they
        sealed may name a customer erased later, and its copies in dead rows and the
        write-ahead log must not open then."""
        if not ids:
            return
        file = self.key_file(main)
        values = {"ids": list(ids)}
        with self.connect(main, write=True) as connection:
            buckets = {row["bucket"] for row in _BUCKETS_OF.rows(connection, values)}
            _DISCARD.run(connection, [values])
            if buckets:
                _mark_stale(connection, file, buckets)

    def destroy(
        self,
        main: Connection,
        profile_uuid: str,
        subjects: Collection[str],
        erased_at: int,
        *,
        suppress: bool,
        made_by: int | None = None,
    ) -> int:
        """Under the append lock: destroy the keys of `subjects` (only those made by
        `made_by`, when finishing an erasure of then: later ones seal later webhooks), and
        record them as erased with `profile_uuid` at `erased_at`; how many keys were
        destroyed. Their buckets are marked stale: rotate() then wraps their other keys
        anew and overwrites the KEK that wrapped the destroyed ones.

        Suppression, once asked for, stays: erasing again without it does not lift it."""
        file = self.key_file(main)
        with self.connect(main, write=True) as connection:
            doomed = select(keys.c.id, keys.c.bucket).where(db.any_of(keys.c.subject, "subjects"))
            if made_by is not None:
                doomed = doomed.where(keys.c.created_at <= made_by)
            found = connection.execute(doomed, {"subjects": list(subjects)}).all()
            if found:
                connection.execute(
                    delete(keys).where(db.any_of(keys.c.id, "ids")),
                    {"ids": [row.id for row in found]},
                )
                _mark_stale(connection, file, {row.bucket for row in found})
            rows = [
                {
                    "subject": subject,
                    "profile_uuid": profile_uuid,
                    "erased_at": erased_at,
                    "suppressed": suppress,
                }
                for subject in subjects
            ]
            db.upsert(connection, erased_subjects, rows, key=["subject"], greatest=["suppressed"])
        return len(found)

    def check(self, main: Connection) -> None:
        """Refuse a key file that unwraps none of the first keys of the keystore (the file
        of another store, or a new one beside a database restored elsewhere); and bring
        the file to the generation every key of each bucket is wrapped under (a process
        stopped between an erasure's commit and its write to the file)."""
        file = self.key_file(main)
        with self.connect(main) as connection:
            first = connection.execute(
                select(keys.c.id, keys.c.material).order_by(keys.c.id).limit(_CHECKED)
            ).all()
            recorded = connection.execute(select(key_buckets)).all()
        if first and file.path is not None and not file.path.exists():
            raise KeyFileMismatch(  # a new one would open none of them: never made then
                f"the key file {file.describe()} does not exist, and the keystore "
                f"({self.describe()}) holds keys wrapped under one: set CDP_KEY_FILE to "
                "the file of this store, the one every process of it uses"
            )
        found, _, _ = _opened(file, [dict(row._mapping) for row in first])
        if found and not any(found.values()):  # keys wrapped under a generation the file is
            # past are no sign of another file: a keystore restored from before an erasure
            raise KeyFileMismatch(
                f"the key file {file.describe()} does not unwrap the keys the keystore "
                f"({self.describe()}) holds: set CDP_KEY_FILE to the file of "
                "this store, the one every process of it uses"
            )
        file.advance_all((row.bucket, row.wrapped) for row in recorded)

    def rotate(self, main: Connection, keys_at_once: int) -> "Rotated":
        """Under the append lock: a step of moving each bucket an erasure destroyed a key of
        to its next generation. The generation of each such bucket moves on at once (keys
        made from then on are wrapped under it); then up to `keys_at_once` keys wrapped
        under an earlier one are wrapped anew under their bucket's. A step holds the lock
        for a bounded time however many keys the store has; the KEK of the last generation
        stays in the key file (it still opens the keys not wrapped anew yet) until every
        key of its bucket is, and the Rotated says which buckets those are."""
        file = self.key_file(main)
        with self.connect(main, write=True) as connection:
            connection.execute(
                update(key_buckets)
                .where(key_buckets.c.stale)
                .values(generation=key_buckets.c.generation + 1, stale=False)
            )
            behind = dict(
                connection.execute(
                    select(key_buckets.c.bucket, key_buckets.c.generation).where(
                        key_buckets.c.wrapped < key_buckets.c.generation
                    )
                ).all()
            )
            if not behind:
                return Rotated([], False)
            rows = connection.execute(_BEHIND, {"n": keys_at_once}).all()
            changed = []
            for row in rows:
                kek = file.kek(row.bucket, row.target)
                old = file.kek(row.bucket, row.generation)
                assert kek is not None  # the file is never past a bucket's `wrapped`
                material = None
                if old is not None:
                    aead = AESGCM(old)
                    material = _unwrap(aead, row.bucket, row.generation, row.id, row.material)
                # One that does not unwrap is lost already (see KeyFileMismatch): it stays
                # as it is, counted as wrapped anew so that no step takes it again.
                wrapped = row.material
                if material is not None:
                    wrapped = keyfile.wrap(kek, row.bucket, row.target, row.id, material)
                changed.append({"key": row.id, "material": wrapped, "to": row.target})
            _REWRAP.run(connection, changed)
            # The keys come a bucket after another: those of a bucket before the last one
            # read are all wrapped anew, and the last one's too unless the step was full.
            more = len(rows) == keys_at_once
            last = rows[-1].bucket if more else None
            done = sorted(bucket for bucket in behind if last is None or bucket < last)
            connection.execute(
                update(key_buckets)
                .where(db.any_of(key_buckets.c.bucket, "done"))
                .values(wrapped=key_buckets.c.generation),
                {"done": done},
            )
            done_at = [(bucket, behind[bucket]) for bucket in done]
        return Rotated(done_at, more)

    def advance(self, main: Connection | Engine, moved: Iterable[tuple[int, int]]) -> None:
        """Bring the key file to the generations rotate() moved the buckets to, once
        committed: each last KEK overwritten on disk."""
        self.key_file(main).advance_all(moved)

    def checkpoint(self) -> None:
        """A keystore of its own on SQLite: its write-ahead log emptied (see db.empty_log),
        so that the pages an erasure changed are not left in it."""
        if self.engine is not None and not db.empty_log(self.engine):
            logger.info("the keystore's log was not emptied: a reader was in the way")

    def erased(self, main: Connection, subjects: Collection[str]) -> set[str]:
        """Those of `subjects` whose keys an erasure destroyed."""
        if not subjects:
            return set()
        with self.connect(main) as connection:
            rows = _ERASED.rows(connection, {"subjects": list(subjects)})
        return {row["subject"] for row in rows}

    def erasures(self, main: Connection) -> dict[str, tuple[int, bool, set[str]]]:
        """Every profile erased: when, whether suppressed, and the subjects erased with it."""
        found: dict[str, tuple[int, bool, set[str]]] = {}
        with self.connect(main) as connection:
            for row in connection.execute(select(erased_subjects)):
                at, suppressed, subjects = found.get(row.profile_uuid, (0, False, set()))
                subjects.add(row.subject)
                found[row.profile_uuid] = (
                    max(at, row.erased_at),
                    suppressed or row.suppressed,
                    subjects,
                )
        return found

    def adopt(self, main: Connection) -> int:
        """Move the keys and erasure records the main database holds into a keystore of
        its own (those of an older version, or of before CDP_KEYSTORE_URL was set); how
        many rows moved. A key the keystore erased since (the main database restored
        from an older backup), or whose subject has another key there, is dropped."""
        if self.engine is None:
            return 0
        found = _held(main)
        if not any(found.values()):
            return 0
        file = self.key_file(main)
        with self.connect(main, write=True) as connection:
            held = {
                row.subject: row.erased_at for row in connection.execute(select(erased_subjects))
            }
            keyed = {subject for (subject,) in connection.execute(select(keys.c.subject))}
            db.insert(
                connection,
                erased_subjects,
                [row for row in found.get(erased_subjects, []) if row["subject"] not in held],
            )
            kept = [
                row
                for row in found.get(keys, [])
                if row["subject"] not in keyed
                and row["created_at"] > held.get(row["subject"], row["created_at"] - 1)
            ]
            buckets = {keyfile.bucket_of(row["subject"]) for row in kept}
            generations = _current(connection, file, buckets)
            db.insert(connection, keys, [_rewrapped(file, row, generations) for row in kept])
            stale = {row["bucket"] for row in found.get(key_buckets, []) if row["stale"]}
            _mark_stale(connection, file, stale)
        for table in found:
            main.execute(delete(table))
        return sum(len(rows) for rows in found.values())


def _opened(
    file: KeyFile, rows: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, bytes], list[str], set[int]]:
    """The material of each of `rows` (id, material) unwrapped (b"" for one that does not
    unwrap); the ids of those wrapped under a generation the key file is past; and the
    buckets of those wrapped under a later generation than the file holds (wrapped anew
    by a process whose copy of the file this one is not: see Keystore.materials)."""
    found, behind, ahead = {}, [], set()
    for row in rows:
        head = keyfile.header(row["material"])
        if head is None:
            found[row["id"]] = b""
            continue
        aead = file.aead(*head)
        if aead is None:
            behind.append(row["id"])
            continue
        material = keyfile.unwrap(aead, row["id"], row["material"])
        found[row["id"]] = b"" if material is None else material
        if material is not None and file.generation(head[0]) < head[1]:
            ahead.add(head[0])
    return found, behind, ahead


def _unwrap(
    aead: AESGCM, bucket: int, generation: int, key_id: str, wrapped: bytes
) -> bytes | None:
    """The key `wrapped` holds, if it is wrapped under that bucket's generation."""
    if keyfile.header(wrapped) != (bucket, generation):
        return None
    return keyfile.unwrap(aead, key_id, wrapped)


def _unwrapped(file: KeyFile, subject: str, key: Key) -> bytes | None:
    """The live key of `subject`, which must seal a webhook: unwrapped; None if it is
    wrapped under a generation the key file is past (a keystore restored from a backup
    older than an erasure: what it sealed is lost, and a new key seals what comes)."""
    head = keyfile.header(key.material)
    if head is not None and file.generation(head[0]) > head[1]:
        return None
    aead = None if head is None else file.aead(*head)
    material = None if aead is None else keyfile.unwrap(aead, key.id, key.material)
    if material is None:
        raise KeyFileMismatch(
            f"the key of {subject} does not unwrap with the key file {file.describe()}: "
            "is CDP_KEY_FILE the file of this store (every process must use the same one)?"
        )
    return material


def _current(connection: Connection, file: KeyFile, buckets: Collection[int]) -> dict[int, int]:
    """Under the append lock: the generation each of `buckets` wraps keys under now: the
    later of the keystore's and the key file's (the file is ahead only of a keystore
    restored from an older backup, or emptied). The keystore, which every process writes
    under the append lock, says when another process moved a bucket on; the file is read
    anew only for a bucket the keystore has no row of. The key file is brought to the
    generation every key of the bucket is wrapped under, no further: it must still open
    the others."""
    if not buckets:
        return {}
    held = {
        row["bucket"]: (row["generation"], row["wrapped"])
        for row in _GENERATIONS.rows(connection, {"buckets": sorted(buckets)})
    }
    if any(bucket not in held for bucket in buckets):  # the file may be all there is to go by
        file.reread()
    on_file = {bucket: file.generation(bucket) for bucket in buckets}
    current, rows, behind = {}, [], []
    for bucket in buckets:
        recorded, wrapped = held.get(bucket, (None, None))
        generation = max(on_file[bucket], recorded if recorded is not None else 0)
        if recorded is None or recorded < generation:
            rows.append(
                {"bucket": bucket, "generation": generation, "wrapped": generation, "stale": False}
            )
        elif wrapped is not None and on_file[bucket] < wrapped:
            behind.append((bucket, wrapped))
        current[bucket] = generation
    file.advance_all(behind)
    db.upsert(
        connection, key_buckets, rows, key=["bucket"], greatest=["generation", "wrapped", "stale"]
    )
    return current


def _mark_stale(connection: Connection, file: KeyFile, buckets: Collection[int]) -> None:
    """Record that an erasure destroyed a key of each of `buckets`: see Keystore.rotate."""
    rows = [
        {
            "bucket": bucket,
            "generation": file.generation(bucket),
            "wrapped": file.generation(bucket),
            "stale": True,
        }
        for bucket in sorted(buckets)
    ]
    db.upsert(
        connection, key_buckets, rows, key=["bucket"], greatest=["generation", "wrapped", "stale"]
    )


def _held(main: Connection) -> dict[Table, list[dict[str, Any]]]:
    """The rows of the keystore's tables that the main database holds, as far as its
    schema has them (adopt runs before the migrations too: a main database of an older
    version has no `key_buckets`, and its keys no bucket, stored as they are)."""
    there = inspect(main)
    found: dict[Table, list[dict[str, Any]]] = {}
    for table in TABLES:
        if there.has_table(table.name):
            names = {column["name"] for column in there.get_columns(table.name)}
            columns = [column for column in table.c if column.name in names]
            found[table] = [dict(row._mapping) for row in main.execute(select(*columns))]
    return found


def _rewrapped(
    file: KeyFile, row: dict[str, Any], generations: Mapping[int, int]
) -> dict[str, Any]:
    """A key row moved from the main database, wrapped under its bucket's generation in the
    keystore it moves to: one an older version stored as it is, too (one that does not
    unwrap stays as it was: lost either way)."""
    head = keyfile.header(row["material"])
    bucket = keyfile.bucket_of(row["subject"])
    generation = generations[bucket]
    if head == (bucket, generation):
        return {**row, "bucket": bucket, "generation": generation}
    kek = file.kek(bucket, generation)
    if head is None:  # bare: as an older version stored it
        material = row["material"] if len(row["material"]) == personal.KEY_BYTES else None
    else:
        aead = file.aead(*head)
        material = None if aead is None else keyfile.unwrap(aead, row["id"], row["material"])
    if material is None or kek is None:
        return {**row, "bucket": bucket, "generation": generation}
    wrapped = keyfile.wrap(kek, bucket, generation, row["id"], material)
    return {**row, "bucket": bucket, "generation": generation, "material": wrapped}


def _wrap_bare(connection: Connection, file: KeyFile) -> int:
    """Wrap the keys an older version wrote as they are (those with no bucket yet), in a
    keystore of its own; how many. The main database's are wrapped by a migration."""
    bare = connection.execute(
        select(keys.c.id, keys.c.subject, keys.c.material).where(keys.c.bucket.is_(None))
    ).all()
    if not bare:
        return 0
    generations = _current(connection, file, {keyfile.bucket_of(row.subject) for row in bare})
    for row in bare:
        bucket = keyfile.bucket_of(row.subject)
        kek = file.kek(bucket, generations[bucket])
        assert kek is not None
        wrapped = keyfile.wrap(kek, bucket, generations[bucket], row.id, row.material)
        connection.execute(
            update(keys)
            .where(keys.c.id == row.id)
            .values(material=wrapped, bucket=bucket, generation=generations[bucket])
        )
    return len(bare)


# The keys wrapped under an earlier generation than their bucket's (`target`), `n` at most,
# a bucket after another.
_BEHIND: Final = (
    select(
        keys.c.id,
        keys.c.bucket,
        keys.c.generation,
        keys.c.material,
        key_buckets.c.generation.label("target"),
    )
    .select_from(keys.join(key_buckets, keys.c.bucket == key_buckets.c.bucket))
    .where(
        key_buckets.c.wrapped < key_buckets.c.generation,
        keys.c.generation < key_buckets.c.generation,
    )
    .order_by(key_buckets.c.bucket)
    .limit(bindparam("n", type_=Integer))
)
_REWRAP: Final = db.Prepared(
    update(keys)
    .where(keys.c.id == bindparam("key"))
    .values(material=bindparam("material"), generation=bindparam("to"))
)

_GENERATIONS: Final = db.Prepared(
    select(key_buckets.c.bucket, key_buckets.c.generation, key_buckets.c.wrapped).where(
        db.any_of(key_buckets.c.bucket, "buckets")
    )
)


# Prepared: what a replay forgets is discarded in a pipeline (see db.writing).
_BUCKETS_OF: Final = db.Prepared(select(keys.c.bucket).where(db.any_of(keys.c.id, "ids")))
_DISCARD: Final = db.Prepared(delete(keys).where(db.any_of(keys.c.id, "ids")))
_IDS_OF: Final = db.Prepared(
    select(keys.c.subject, keys.c.id).where(db.any_of(keys.c.subject, "subjects"))
)
_MATERIALS: Final = db.Prepared(
    select(keys.c.id, keys.c.material).where(db.any_of(keys.c.id, "ids"))
)


class Rotated(NamedTuple):
    """What a step of Keystore.rotate did: the buckets whose every key it has wrapped under
    their generation, each with it (the key file is brought to those once committed: see
    advance); and whether keys are left for another step."""

    done: list[tuple[int, int]]
    more: bool


class Known(NamedTuple):
    """What the keystore holds of a batch: its subjects' keys (wrapped, see ring()); which
    subjects it names were erased; and which of those are suppressed, with the profile
    each was erased with."""

    keys: dict[str, Key]
    erased: set[str]
    suppressed: dict[str, str]


def knowing(*leading: ColumnElement[Any]) -> list[Select[Any]]:
    """The statements that read what the keystore knows of the list parameters "subjects"
    (their keys) and "named" (those erased), each row after the `leading` columns:
    subject, key_id, material, profile_uuid, suppressed. Read with known_of()."""
    return [
        select(
            *leading,
            keys.c.subject,
            keys.c.id.label("key_id"),
            keys.c.material,
            null().label("profile_uuid"),
            cast(null(), Boolean).label("suppressed"),
        ).where(db.any_of(keys.c.subject, "subjects")),
        select(
            *leading,
            erased_subjects.c.subject,
            null().label("key_id"),
            null().label("material"),
            erased_subjects.c.profile_uuid,
            erased_subjects.c.suppressed,
        ).where(db.any_of(erased_subjects.c.subject, "named")),
    ]


def known_of(rows: Iterable[Mapping[str, Any]]) -> Known:
    """What rows of knowing()'s statements say (rows of other statements skipped)."""
    known = Known({}, set(), {})
    for row in rows:
        if row["key_id"] is not None:
            known.keys[row["subject"]] = Key(row["key_id"], row["material"])
        elif row["profile_uuid"] is not None:
            known.erased.add(row["subject"])
            if row["suppressed"]:
                known.suppressed[row["subject"]] = row["profile_uuid"]
    return known


_KNOWN: Final = db.Prepared(union_all(*knowing()))
_ERASED: Final = db.Prepared(
    select(erased_subjects.c.subject, erased_subjects.c.suppressed).where(
        db.any_of(erased_subjects.c.subject, "subjects")
    )
)
_ADD: Final = db.Prepared(
    insert(keys).values({column.name: bindparam(column.name) for column in keys.c})
)


MAIN: Final = Keystore()

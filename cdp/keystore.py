"""The keys that seal personal data in the log, and the record of whose were destroyed.

The keystore is the main database (CDP_KEYSTORE_URL unset on PostgreSQL) or a database of
its own (the default beside a SQLite file): then a backup of the main database holds no
key, and restoring one taken before an erasure cannot bring the erased data back.

Every change to keys happens under the log's append lock, so no webhook is sealed with a
key that an erasure is destroying. A keystore of its own commits before the main
database does: a failure in between leaves at most an unused key, or an erasure that
`cdp.erasure.reconcile` finishes.
"""

import secrets
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, NamedTuple

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Select,
    bindparam,
    cast,
    delete,
    insert,
    null,
    select,
    union_all,
)

from cdp import db, personal
from cdp.models import erased_subjects, keys
from cdp.times import now_ms

TABLES: Final = (keys, erased_subjects)


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    material: bytes


class Keystore:
    """Where the keys are: in the main database (`engine` None) or in one of their own."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine
        self._ready = engine is None

    @classmethod
    def at(
        cls,
        url: str | None,
        *,
        connections: int = 2,
        wait: timedelta = timedelta(seconds=30),
        synchronous: str = "full",
    ) -> "Keystore":
        """The keystore at `url`, or in the main database when None; a server gives it as
        many connections as the main database, since each read may open keys. A keystore
        of its own on SQLite commits as durably as `synchronous` says (see db.SYNCHRONOUS):
        a key lost to a power cut would leave the webhooks it sealed unreadable."""
        if url is None:
            return cls(None)
        return cls(db.make_engine(url, connections=connections, wait=wait, synchronous=synchronous))

    @property
    def apart(self) -> bool:
        return self.engine is not None

    def describe(self) -> str:
        if self.engine is None:
            return "the main database"
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def connect(self, main: Connection, *, write: bool = False) -> Iterator[Connection]:
        """A connection to the keystore: `main` itself (in its transaction), or one of its
        own; with `write`, in a transaction of its own that commits when the block ends."""
        if self.engine is None:
            yield main
            return
        self._create()
        if write:
            with db.writing(self.engine) as connection:
                yield connection
        else:
            with self.engine.connect() as connection:
                yield connection

    def _create(self) -> None:
        """A keystore of its own holds only the keystore's tables, made on first use."""
        if not self._ready:
            assert self.engine is not None
            with db.writing(self.engine) as connection:
                for table in TABLES:
                    table.create(connection, checkfirst=True)
            self._ready = True

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def materials(self, main: Connection, ids: Collection[str]) -> dict[str, bytes]:
        """The key material of those of `ids` not destroyed."""
        if not ids:
            return {}
        with self.connect(main) as connection:
            rows = _MATERIALS.rows(connection, {"ids": list(ids)})
        return {row["id"]: row["material"] for row in rows}

    def known(self, main: Connection, subjects: Collection[str], named: Collection[str]) -> "Known":
        """Under the append lock: the keys of `subjects`, and which of `named` (the subjects
        a batch names) were erased (see Known). In the main database's round trip instead,
        when the keystore is in it: see knowing()."""
        with self.connect(main) as connection:
            values = {"subjects": list(subjects), "named": list(named)}
            return known_of(_KNOWN.rows(connection, values))

    def ring(self, main: Connection, subjects: Collection[str], known: "Known") -> dict[str, Key]:
        """Under the append lock: the key of each of `subjects`, made for those `known` has
        none of; only for webhooks about to be logged, so none is made for one refused."""
        ring = {subject: known.keys[subject] for subject in subjects if subject in known.keys}
        if missing := [subject for subject in subjects if subject not in ring]:
            created = now_ms()
            made = {subject: Key(secrets.token_hex(16), personal.new_key()) for subject in missing}
            rows = [
                {"id": key.id, "subject": subject, "material": key.material, "created_at": created}
                for subject, key in made.items()
            ]
            with self.connect(main, write=True) as connection:
                _ADD.run(connection, rows)
            ring.update(made)
        return ring

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
        destroyed.

        Suppression, once asked for, stays: erasing again without it does not lift it."""
        with self.connect(main, write=True) as connection:
            doomed = delete(keys).where(db.among(keys.c.subject, "subjects"))
            if made_by is not None:
                doomed = doomed.where(keys.c.created_at <= made_by)
            gone = connection.execute(doomed, {"subjects": list(subjects)}).rowcount
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
        return int(gone)

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
        found = {table: [dict(r._mapping) for r in main.execute(select(table))] for table in TABLES}
        if not any(found.values()):
            return 0
        with self.connect(main, write=True) as connection:
            held = {
                row.subject: row.erased_at for row in connection.execute(select(erased_subjects))
            }
            keyed = {subject for (subject,) in connection.execute(select(keys.c.subject))}
            db.insert(
                connection,
                erased_subjects,
                [row for row in found[erased_subjects] if row["subject"] not in held],
            )
            kept = [
                row
                for row in found[keys]
                if row["subject"] not in keyed
                and row["created_at"] > held.get(row["subject"], row["created_at"] - 1)
            ]
            db.insert(connection, keys, kept)
        for table in TABLES:
            main.execute(delete(table))
        return sum(len(rows) for rows in found.values())


_MATERIALS: Final = db.Prepared(
    select(keys.c.id, keys.c.material).where(db.among(keys.c.id, "ids"))
)


class Known(NamedTuple):
    """What the keystore holds of a batch: its subjects' keys; which subjects it names
    were erased; and which of those are suppressed, with the profile each was erased with."""

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
        ).where(db.among(keys.c.subject, "subjects")),
        select(
            *leading,
            erased_subjects.c.subject,
            null().label("key_id"),
            null().label("material"),
            erased_subjects.c.profile_uuid,
            erased_subjects.c.suppressed,
        ).where(db.among(erased_subjects.c.subject, "named")),
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
        db.among(erased_subjects.c.subject, "subjects")
    )
)
_ADD: Final = db.Prepared(
    insert(keys).values({column.name: bindparam(column.name) for column in keys.c})
)


MAIN: Final = Keystore()

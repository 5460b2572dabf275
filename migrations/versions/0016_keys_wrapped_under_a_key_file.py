"""Keys wrapped under a key file: no key that seals personal data stays in the database as
it is. Each key gets its bucket, and its material is wrapped (AES-GCM) under the key-
encryption key of that bucket's generation in the key file (CDP_KEY_FILE), which is made
if there is none, and its generation; `key_buckets` records each bucket's generation.

What this needs of cdp's key file and wrapping is copied here, as they are at this
revision: a later cdp may change its own. Run it with `cdp migrate` (which passes the key
file in); a database with keys and no key file given is refused, nothing changed.

The keys were written to the database as they are before this revision, and a database
cannot be made to forget what it wrote: see the README ("Upgrading to 0016").

Revision ID: 0016
Revises: 0015
"""

import fcntl
import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class Refused(Exception):
    """This migration cannot run on this database as it is, and says why; nothing changed.
    migrations/env.py, which tells it by `migration_refused`, raises it as cdp's own."""

    migration_refused = True


_BUCKETS = 1024
_MAGIC = b"cdp key file 1\n\x00"
_ENTRY = struct.Struct(">I32s")
_SIZE = len(_MAGIC) + _BUCKETS * _ENTRY.size
_STEP = b"cdp key-encryption key, next generation"
_VERSION = 1
_HEADER = struct.Struct(">BHI")
_NONCE = 12

_KEYS = sa.table(
    "keys",
    sa.column("id", sa.String),
    sa.column("subject", sa.String),
    sa.column("material", sa.LargeBinary),
    sa.column("bucket", sa.Integer),
    sa.column("generation", sa.BigInteger),
)
_KEY_BUCKETS = sa.table(
    "key_buckets",
    sa.column("bucket", sa.Integer),
    sa.column("generation", sa.BigInteger),
    sa.column("wrapped", sa.BigInteger),
    sa.column("stale", sa.Boolean),
)


def upgrade() -> None:
    op.create_table(
        "key_buckets",
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("wrapped", sa.BigInteger(), nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_key_buckets")),
    )
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("bucket", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("generation", sa.BigInteger(), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(_KEYS.c.id, _KEYS.c.subject, _KEYS.c.material)).all()
    if rows:
        entries = _entries(_key_file())
        used: dict[int, int] = {}
        for row in rows:
            bucket = _bucket(row.subject)
            generation, kek = entries[bucket]
            used[bucket] = generation
            connection.execute(
                sa.update(_KEYS)
                .where(_KEYS.c.id == row.id)
                .values(
                    bucket=bucket,
                    generation=generation,
                    material=_wrap(kek, bucket, generation, row.id, row.material),
                )
            )
        connection.execute(
            sa.insert(_KEY_BUCKETS),
            [
                {"bucket": b, "generation": g, "wrapped": g, "stale": False}
                for b, g in sorted(used.items())
            ],
        )
    with op.batch_alter_table("keys") as batch:
        batch.alter_column("bucket", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("generation", existing_type=sa.BigInteger(), nullable=False)
        batch.create_index("ix_keys_bucket_generation", ["bucket", "generation"])


def downgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(_KEYS.c.id, _KEYS.c.material)).all()
    if rows:
        entries = _entries(_key_file())
        for row in rows:
            material = _unwrap(entries, row.id, row.material)
            if material is None:
                raise Refused(
                    f"the key {row.id} does not unwrap with the key file: is CDP_KEY_FILE "
                    "the file of this store?"
                )
            connection.execute(
                sa.update(_KEYS).where(_KEYS.c.id == row.id).values(material=material)
            )
    with op.batch_alter_table("keys") as batch:
        batch.drop_index("ix_keys_bucket_generation")
        batch.drop_column("generation")
        batch.drop_column("bucket")
    op.drop_table("key_buckets")


def _key_file() -> Path:
    path = op.get_context().config.attributes.get("key_file")
    if path is None:
        raise Refused(
            "the keys are wrapped under the key file, and none was given: run this through "
            "`cdp migrate` with CDP_KEY_FILE set as the server has it"
        )
    return Path(path)


def _bucket(subject: str) -> int:
    digest = hashlib.sha256(subject.encode()).digest()
    return int.from_bytes(digest[:4], "big") % _BUCKETS


def _entries(path: Path) -> list[tuple[int, bytes]]:
    """Each bucket's generation and key-encryption key, from the key file (made first, with
    every bucket at generation 0, if there is none)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            entries = b"".join(_ENTRY.pack(0, os.urandom(32)) for _ in range(_BUCKETS))
            os.write(handle, _MAGIC + entries)
            os.fsync(handle)
        finally:
            os.close(handle)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    handle = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_SH)
        data = os.pread(handle, _SIZE + 1, 0)
    finally:
        os.close(handle)
    if len(data) != _SIZE or not data.startswith(_MAGIC):
        raise Refused(f"{path} is not a cdp key file: is CDP_KEY_FILE the file of this store?")
    return [_ENTRY.unpack_from(data, len(_MAGIC) + n * _ENTRY.size) for n in range(_BUCKETS)]


def _wrap(kek: bytes, bucket: int, generation: int, key_id: str, material: bytes) -> bytes:
    head = _HEADER.pack(_VERSION, bucket, generation)
    nonce = os.urandom(_NONCE)
    return head + nonce + AESGCM(kek).encrypt(nonce, material, head + key_id.encode())


def _unwrap(entries: list[tuple[int, bytes]], key_id: str, wrapped: bytes) -> bytes | None:
    head = wrapped[: _HEADER.size]
    if len(wrapped) <= _HEADER.size + _NONCE:
        return None
    version, bucket, generation = _HEADER.unpack(head)
    if version != _VERSION or bucket >= _BUCKETS:
        return None
    held, kek = entries[bucket]
    if held > generation:
        return None
    for _ in range(generation - held):
        kek = hmac.digest(kek, _STEP, "sha256")
    nonce = wrapped[_HEADER.size : _HEADER.size + _NONCE]
    try:
        return AESGCM(kek).decrypt(nonce, wrapped[_HEADER.size + _NONCE :], head + key_id.encode())
    except (InvalidTag, ValueError):
        return None

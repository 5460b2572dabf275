"""The key file: the key-encryption keys (KEKs) that wrap every key of the keystore.

No key that seals personal data is ever written to a database as it is: the keystore
holds each wrapped (AES-GCM) under the KEK of its bucket, one of BUCKETS by a hash of its
subject, and the KEKs live here, outside every database. A database cannot be made to
forget what it once wrote (PostgreSQL's dead tuples and WAL segments, SQLite's freed
pages and write-ahead log); this file can: an erasure moves the bucket of each subject it
erased to its next generation, whose KEK is the HMAC of the last one, written over it in
place. The keys it destroyed stay wrapped, wherever a database left them, under a KEK
that no longer exists, and the next generation cannot be turned back into it.

Every process of one store reads the same file. Since a generation follows from the one
before, a process that finds a key wrapped under a later generation than it holds steps
its own copy forward (the file too); none ever needs an earlier one. The file is made at
first use, readable by its owner alone.

Layout: MAGIC, then for each bucket its generation (4 bytes, big-endian) and its KEK (32).
"""

import fcntl
import hashlib
import hmac
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import URL, make_url

BUCKETS: Final = 1024
KEK_BYTES: Final = 32
MAGIC: Final = b"cdp key file 1\n\x00"
_ENTRY: Final = struct.Struct(">I32s")
SIZE: Final = len(MAGIC) + BUCKETS * _ENTRY.size
_STEP: Final = b"cdp key-encryption key, next generation"

# A wrapped key: VERSION, its bucket and generation, the nonce, the key encrypted and its
# tag. The header is authenticated with the key's id, so a wrapped key opens in its own
# row only.
VERSION: Final = 1
_HEADER: Final = struct.Struct(">BHI")
_NONCE_BYTES: Final = 12
WRAPPED_BYTES: Final = _HEADER.size + _NONCE_BYTES + 32 + 16


class KeyFileError(Exception):
    """The key file cannot be read or written, or is not one: the message says which file."""


def default_path(database: str | URL) -> Path | None:
    """Where a store keeps its key file unless CDP_KEY_FILE says: beside a SQLite database
    (cdp.db: cdp.kek); for PostgreSQL, in the user's state directory, named after the
    server and database; None for a SQLite database in memory (the KEKs stay in memory)."""
    url = make_url(database)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        path = Path(url.database)
        return path.with_name(f"{path.stem}.kek")
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "cdp" / f"{url.host or 'localhost'}-{url.port or 5432}-{url.database}.kek"


def bucket_of(subject: str) -> int:
    """The bucket of a subject's key: an erasure moves its bucket to the next generation."""
    digest = hashlib.sha256(subject.encode()).digest()
    return int.from_bytes(digest[:4], "big") % BUCKETS


def step(kek: bytes) -> bytes:
    """The KEK of the next generation: one-way, so the next never gives the last away."""
    return hmac.digest(kek, _STEP, "sha256")


def header(wrapped: bytes) -> tuple[int, int] | None:
    """The bucket and generation a wrapped key names, or None if it is none."""
    if len(wrapped) != WRAPPED_BYTES:
        return None
    version, bucket, generation = _HEADER.unpack_from(wrapped)
    if version != VERSION or bucket >= BUCKETS:
        return None
    return bucket, generation


def wrap(kek: bytes, bucket: int, generation: int, key_id: str, material: bytes) -> bytes:
    head = _HEADER.pack(VERSION, bucket, generation)
    nonce = os.urandom(_NONCE_BYTES)
    return head + nonce + AESGCM(kek).encrypt(nonce, material, head + key_id.encode())


def unwrap(aead: AESGCM, key_id: str, wrapped: bytes) -> bytes | None:
    """The key `wrapped` holds, or None if `aead` (its generation's KEK) does not open it."""
    head, nonce = wrapped[: _HEADER.size], wrapped[_HEADER.size : _HEADER.size + _NONCE_BYTES]
    try:
        return aead.decrypt(nonce, wrapped[_HEADER.size + _NONCE_BYTES :], head + key_id.encode())
    except (InvalidTag, ValueError):
        return None


class KeyFile:
    """The KEKs of a store, from its file (or, with no path, of this process alone: a
    store in memory). Thread-safe; other processes coordinate through a lock on the file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: list[tuple[int, bytes]] | None = None
        self._aeads: dict[tuple[int, int], AESGCM] = {}

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "(in memory)"

    def generation(self, bucket: int) -> int:
        """The bucket's generation as this process holds it (the file's at least)."""
        return self._load()[bucket][0]

    def reread(self) -> None:
        """Read the file anew when next asked (another process may have moved a bucket on)."""
        if self.path is not None:
            with self._lock:
                self._entries = None

    def aead(self, bucket: int, generation: int) -> AESGCM | None:
        """The AES-GCM of the bucket's KEK at `generation`, stepped forward from what this
        process holds when that is behind (the file is not written: see advance_all); None
        when the file is past it, so that the KEK of that generation no longer exists."""
        found = self._aeads.get((bucket, generation))
        if found is None:
            kek = self.kek(bucket, generation)
            if kek is None:
                return None
            found = AESGCM(kek)
            with self._lock:  # advance_all() goes through them under it
                self._aeads[(bucket, generation)] = found
        return found

    def kek(self, bucket: int, generation: int) -> bytes | None:
        """The bucket's KEK at `generation`, stepped forward from what the file holds
        (without writing it); None if the file is past it."""
        held, kek = self._load()[bucket]
        if held > generation:
            return None
        for _ in range(generation - held):
            kek = step(kek)
        return kek

    def advance_all(self, moved: Iterable[tuple[int, int]]) -> None:
        """Bring each bucket of `moved` to its generation at least: its KEK stepped forward
        and written over the last one in the file, in place, and the file flushed to disk
        once for them all before this returns. Nothing is done for those this process
        holds at that generation already: the file is there too."""
        holding = self._load()
        moved = [
            (bucket, generation) for bucket, generation in moved if holding[bucket][0] < generation
        ]
        if not moved:
            return
        with self._lock, self._locked(exclusive=True) as handle:
            entries = self._read(handle) if handle is not None else list(self._load_locked())
            written = False
            for bucket, generation in moved:
                held, kek = entries[bucket]
                if held >= generation:
                    continue
                for _ in range(generation - held):
                    kek = step(kek)
                entries[bucket] = (generation, kek)
                if handle is not None:
                    os.pwrite(handle, _ENTRY.pack(generation, kek), _offset(bucket))
                    written = True
                for old in [k for k in self._aeads if k[0] == bucket]:
                    del self._aeads[old]
            if written:
                assert handle is not None
                os.fsync(handle)
            self._entries = entries

    def _load(self) -> list[tuple[int, bytes]]:
        entries = self._entries
        if entries is None:
            with self._lock:
                entries = self._load_locked()
        return entries

    def _load_locked(self) -> list[tuple[int, bytes]]:
        """The entries, read from the file (made first if there is none) when not held."""
        if self._entries is None:
            if self.path is None:
                self._entries = [(0, os.urandom(KEK_BYTES)) for _ in range(BUCKETS)]
            else:
                self._create()
                with self._locked(exclusive=False) as handle:
                    assert handle is not None
                    self._entries = self._read(handle)
        return self._entries

    def _create(self) -> None:
        """Make the file, owner-only, unless it exists; whole or not at all, even when
        several processes make it at once."""
        assert self.path is not None
        if self.path.exists():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                entries = b"".join(_ENTRY.pack(0, os.urandom(KEK_BYTES)) for _ in range(BUCKETS))
                os.write(handle, MAGIC + entries)
                os.fsync(handle)
            finally:
                os.close(handle)
            try:
                os.link(temporary, self.path)  # never over a file another process made
            except FileExistsError:
                pass
            finally:
                os.unlink(temporary)
            _sync_directory(self.path.parent)
        except OSError as error:
            raise KeyFileError(f"cannot make the key file {self.path}: {error.strerror}") from None

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[int | None]:
        """The file open (None in memory), locked against other processes' writes."""
        if self.path is None:
            yield None
            return
        try:
            handle = os.open(self.path, os.O_RDWR if exclusive else os.O_RDONLY)
        except OSError as error:
            raise KeyFileError(f"cannot open the key file {self.path}: {error.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield handle
        finally:
            os.close(handle)

    def _read(self, handle: int) -> list[tuple[int, bytes]]:
        data = os.pread(handle, SIZE + 1, 0)
        if len(data) != SIZE or not data.startswith(MAGIC):
            raise KeyFileError(
                f"{self.path} is not a cdp key file ({len(data)} bytes, not {SIZE}): "
                "is CDP_KEY_FILE the file of this store?"
            )
        return list(_ENTRY.iter_unpack(data[len(MAGIC) :]))


def _offset(bucket: int) -> int:
    return len(MAGIC) + bucket * _ENTRY.size


def _sync_directory(directory: Path) -> None:
    """A new name in a directory survives a power cut once the directory is flushed."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)

"""The key file: KEKs made once, owner-only, stepped forward in place, never back."""

import os
import stat
from pathlib import Path

import pytest

from cdp.privacy import keyfile
from cdp.privacy.keyfile import KeyFile, KeyFileError


def test_the_key_file_is_made_once_readable_by_its_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "store.kek"
    first = KeyFile(path)
    kek = first.kek(7, 0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == keyfile.SIZE
    assert KeyFile(path).kek(7, 0) == kek  # another process reads the same
    assert [p.name for p in tmp_path.iterdir()] == ["store.kek"]


def test_advancing_a_bucket_overwrites_its_last_kek_in_place(tmp_path: Path) -> None:
    path = tmp_path / "store.kek"
    file = KeyFile(path)
    old = file.kek(3, 0)
    assert old is not None
    inode = path.stat().st_ino
    file.advance_all([(3, 2)])
    data = path.read_bytes()
    assert old not in data
    assert keyfile.step(keyfile.step(old)) in data
    assert path.stat().st_ino == inode  # the same file, not a new one beside the old blocks
    assert file.kek(3, 1) is None  # past: no way back
    assert KeyFile(path).generation(3) == 2


def test_a_process_behind_steps_forward_to_a_later_generation(tmp_path: Path) -> None:
    path = tmp_path / "store.kek"
    behind, ahead = KeyFile(path), KeyFile(path)
    kek = behind.kek(9, 0)
    assert kek is not None
    ahead.advance_all([(9, 1)])
    wrapped = keyfile.wrap(keyfile.step(kek), 9, 1, "k1", b"\x01" * 32)
    aead = behind.aead(9, 1)
    assert aead is not None
    assert keyfile.unwrap(aead, "k1", wrapped) == b"\x01" * 32
    assert keyfile.unwrap(aead, "k2", wrapped) is None  # bound to its own row


def test_a_file_that_is_no_key_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "cdp.db"
    path.write_bytes(os.urandom(100))
    with pytest.raises(KeyFileError, match=f"{path} is not a cdp key file"):
        KeyFile(path).generation(0)


def test_the_default_key_file_is_beside_a_sqlite_database() -> None:
    assert keyfile.default_path("sqlite:////srv/cdp/cdp.db") == Path("/srv/cdp/cdp.kek")
    assert keyfile.default_path("sqlite://") is None
    on_postgres = keyfile.default_path("postgresql+psycopg://cdp@db.example:5433/cdp")
    assert on_postgres is not None
    assert on_postgres.name == "db.example-5433-cdp.kek"

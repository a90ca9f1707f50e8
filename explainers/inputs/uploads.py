"""Put uploaded files on disk where loaders can read them: content-addressed, and ZIPs unpacked safely.

Loaders (Keras, the dataset scanner) take paths, and a model in two files (an
architecture JSON and its weights) or a SavedModel folder only works when its
parts sit side by side. Each upload therefore lands in a folder named by the
hash of its bytes, so uploading the same files again reuses that folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from explainers.errors import InputError, echo
from explainers.runtime.cache import cache_dir

# What one unpacked ZIP may hold: a ZIP bomb (a small file inflating to terabytes)
# or millions of entries must fail with a sentence, not fill the disk.
MAX_UNPACKED_BYTES = 4 << 30
MAX_MEMBERS = 100_000
_CHUNK = 1 << 20
_DONE = ".complete"


def _uploads_root() -> Path:
    return cache_dir() / "uploads"


def _digest(files: Sequence[tuple[str, bytes]]) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for name, data in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.blake2b(data, digest_size=16).digest())
    return digest.hexdigest()


def safe_name(name: str) -> str:
    # A browser sends a bare file name, but a crafted request could send a path.
    base = PurePosixPath(name.replace("\\", "/")).name
    if base in ("", ".", ".."):
        raise InputError(f"'{echo(name)}' is not a usable file name.")
    return base


def _publish(build, folder: Path) -> Path:
    """Fill a temporary folder with ``build`` and move it into place, so a half-written one is never seen."""
    if (folder / _DONE).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
    try:
        build(staging)
        (staging / _DONE).touch()
        if not (folder / _DONE).exists():  # another session may have finished the same upload meanwhile
            shutil.rmtree(folder, ignore_errors=True)  # a half-written folder from a crash
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def store_files(files: Sequence[tuple[str, bytes]]) -> Path:
    """Write uploaded ``(name, bytes)`` pairs into one folder keyed by their content; returns it."""
    named = [(safe_name(name), data) for name, data in files]

    def build(folder: Path) -> None:
        for name, data in named:
            (folder / name).write_bytes(data)

    return _publish(build, _uploads_root() / _digest(named))


def _member_target(root: Path, member: zipfile.ZipInfo, source: str) -> Path | None:
    """Where a ZIP member may be written, None to skip it; InputError for a path escaping ``root``."""
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise InputError(f"'{echo(source)}' contains the path '{echo(member.filename)}', which points outside the archive; it was not unpacked.")
    if not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
        return None  # macOS adds resource forks that are not the user's files
    if stat.S_ISLNK(member.external_attr >> 16):
        return None  # a symlink could point anywhere on the server
    return root.joinpath(*parts)


def _unpack(archive: zipfile.ZipFile, root: Path, source: str) -> None:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise InputError(f"'{echo(source)}' holds {len(members)} entries, over the limit of {MAX_MEMBERS}.")
    written = 0
    for member in members:
        target = _member_target(root, member, source)
        if target is None:
            continue
        if member.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # Count the bytes actually inflated: a member's declared size can lie.
        with archive.open(member) as src, open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > MAX_UNPACKED_BYTES:
                    raise InputError(f"'{echo(source)}' unpacks to more than {MAX_UNPACKED_BYTES >> 20} MB, the limit for an upload.")
                dst.write(chunk)


def unpack_zip(data: bytes | Path, source: str) -> Path:
    """Unpack a ZIP (bytes or a path) into a folder keyed by its content; returns the folder.

    Raises InputError naming ``source`` for a file that is not a ZIP, a member
    whose path leaves the folder, or an archive over the size limits.
    """
    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    folder = _uploads_root() / f"zip-{_digest([('archive', raw)])}"

    def build(staging: Path) -> None:
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                _unpack(archive, staging, source)
        except (zipfile.BadZipFile, EOFError):
            raise InputError(f"'{echo(source)}' is not a ZIP archive, or it is truncated.") from None
        except (zipfile.LargeZipFile, NotImplementedError, RuntimeError) as error:
            raise InputError(f"'{echo(source)}' cannot be unpacked here ({error}).") from None

    return _publish(build, folder)

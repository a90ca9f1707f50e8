"""Which server paths a visitor may name: only those inside the data roots whoever runs the server configured.

A path a visitor types is resolved the way the operating system would read it
(``~``, ``..``, relative parts and symbolic links) before it is compared with the
roots, so no spelling and no link leads outside. A path outside is refused with
the same sentence whether or not it exists: the answer reveals nothing about the
rest of the server's files. A path inside that the operating system refuses (too long, a loop of
links, no permission) gets one sentence too, never an OSError.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from explainers.errors import InputError, echo
from explainers.settings import DATA_ROOTS_ENV

# Entries looked at when checking that a model folder holds no link leading outside.
_MAX_MODEL_TREE_ENTRIES = 10_000


def configured_roots() -> tuple[Path, ...]:
    """The existing folders named by ``ATTRIBUTION_DASHBOARD_DATA_ROOTS`` (``os.pathsep``-separated), resolved.

    Empty when the variable is unset or names no existing folder: then no server
    path is accepted at all.
    """
    roots = []
    for entry in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep):
        if not entry.strip():
            continue
        try:
            root = Path(entry.strip()).expanduser().resolve()
        except (OSError, RuntimeError):  # an unknown ~user, a symlink loop
            continue
        if root.is_dir():
            roots.append(root)
    return tuple(dict.fromkeys(roots))


def describe(roots: Sequence[Path]) -> str:
    """The roots as a short phrase for help texts: ``/data`` or ``/data, /models``."""
    return ", ".join(str(root) for root in roots)


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the already resolved ``path`` is one of ``roots`` or lies below one."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def _outside(text: str, roots: Sequence[Path]) -> InputError:
    return InputError(f"'{echo(text)}' is not inside the folders this dashboard may read ({describe(roots)}).")


def unusable(shown: str | Path, error: OSError) -> InputError:
    """The one sentence for a path the operating system refused (OSError of any kind), naming it as ``shown``."""
    reason = error.strerror or type(error).__name__
    return InputError(f"'{echo(shown)}' cannot be opened: {reason[:1].lower()}{reason[1:]}.")


# What a path that is merely absent (or names a file as if it were a folder) answers: later steps say so in
# their own words ("does not exist", "is not a folder"), so these are not the operating system's refusal.
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


def check_path(path: Path, shown: str | Path | None = None) -> Path:
    """``path`` when the operating system can look it up (it need not exist); InputError naming ``shown`` otherwise.

    Catches what ``Path.exists`` and ``is_dir`` would raise later (a name too long, a loop of links, a
    folder without permission), so every caller gets one sentence instead of an exception.
    """
    try:
        os.stat(path)
    except OSError as error:
        if error.errno not in _ABSENT:
            raise unusable(shown if shown is not None else path, error) from None
    except ValueError:  # a NUL byte: no file can have that name
        raise InputError(f"'{echo(shown if shown is not None else path)}' is not a usable path.") from None
    return path


def resolve_inside(text: str | Path, roots: Sequence[Path]) -> Path:
    """The real path ``text`` names, when it lies inside one of ``roots``; InputError otherwise.

    A relative path is taken from the first root. With no roots every path is refused.
    """
    text = str(text).strip()
    if not roots:
        raise InputError("This dashboard reads no folders on its server; upload the file instead.")
    if not text:
        raise InputError("Give a path.")
    try:
        path = Path(text).expanduser()
        real = (path if path.is_absolute() else roots[0] / path).resolve()
    except (OSError, RuntimeError, ValueError):  # an unknown ~user, a symlink loop, a NUL byte
        raise _outside(text, roots) from None
    if not inside(real, roots):
        raise _outside(text, roots)
    return check_path(real, text)


def resolve_given(text: str | Path, roots: Sequence[Path] | None) -> Path:
    """The real path a user gave: inside ``roots`` when a server has them (``resolve_inside``), else any path of
    this machine, as the CLI's user may name (``~`` expanded, links followed); InputError in one sentence."""
    if roots is not None:
        return resolve_inside(text, roots)
    try:
        return check_path(Path(text).expanduser().resolve(), text)
    except RuntimeError:  # an unknown ~user, a loop of links
        raise InputError(f"'{echo(text)}' cannot be opened: no such user, or a loop of links.") from None


def resolve_model_path(text: str | Path, roots: Sequence[Path]) -> Path:
    """Like ``resolve_inside``, and none of the files the model is read from is a link leading outside.

    Besides the path itself, a model reads the files below its folder (a
    SavedModel's ``variables/``, or the model file one level down) or, for an
    architecture ``.json``, the weights file beside it.
    """
    path = resolve_inside(text, roots)
    try:
        if path.is_dir():
            entries = _tree(path, depth=2, text=text)
        elif path.suffix == ".json":
            entries = [p for p in path.parent.iterdir() if p.suffix in (".h5", ".hdf5")]
        else:
            entries = []
        for entry in entries:
            if entry.is_symlink() and not inside(entry.resolve(), roots):
                raise InputError(f"'{echo(text)}' holds a link ('{echo(entry.name)}') to outside the folders this "
                                 "dashboard may read.")
    except OSError as error:  # a folder it may not list, say
        raise unusable(text, error) from None
    except RuntimeError:  # Path.resolve met a loop of links
        raise InputError(f"'{echo(text)}' holds a loop of links.") from None
    return path


def _tree(folder: Path, depth: int, text: str | Path) -> list[Path]:
    """Every entry below ``folder`` down to ``depth`` levels, links not followed, at most a bounded number."""
    found: list[Path] = []
    for current, subfolders, files in os.walk(folder):
        found += [Path(current) / name for name in subfolders + files]
        if len(found) > _MAX_MODEL_TREE_ENTRIES:
            raise InputError(f"'{echo(text)}' holds more than {_MAX_MODEL_TREE_ENTRIES:,} entries; give the model file "
                             "itself.")
        if len(Path(current).relative_to(folder).parts) + 1 >= depth:
            subfolders.clear()
    return found

"""List a class-per-subfolder tree within bounds, without leaving the data roots."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explainers import settings
from explainers.errors import InputError, echo
from explainers.inputs import data_roots
from explainers.inputs.images import IMAGE_SUFFIXES
from explainers.settings import SCAN_MAX_DEPTH_ENV, SCAN_MAX_ENTRIES_ENV

NOT_AN_IMAGE, OUTSIDE_CLASSES = "not an image file (by its extension)", "not inside a class folder"


@dataclass
class DatasetScan:
    """What a class-per-subfolder tree holds, before anything is decoded."""

    root: Path
    folders: list[str]  # class folder names, sorted (the order image_dataset_from_directory uses)
    files: list[Path]
    folder_of_file: np.ndarray  # (N,) index into ``folders``
    empty_folders: list[str]
    skipped: list[tuple[str, str]]  # (path relative to root, why it was left out)


def relative_path(path: Path, root: Path) -> str:
    """``path`` below ``root`` as a results row names it: relative, with forward slashes on every system."""
    return path.relative_to(root).as_posix()


def _visible(name: str) -> bool:
    return not name.startswith((".", "__MACOSX"))


class _Walker:
    """Lists folders within bounds: at most ``max_entries`` entries in all, ``max_depth`` levels down.

    An entry that cannot be read is reported, never raised. With ``roots`` given,
    a link whose target lies outside them is reported and not followed, so a scan
    never leaves the data roots; a link back to a folder already listed is not
    followed twice.
    """

    def __init__(self, root: Path, roots: Sequence[Path] | None, max_entries: int, max_depth: int,
                 on_progress: Callable[[int], None] | None) -> None:
        self.root, self.roots = root, roots
        self.max_entries, self.max_depth, self.on_progress = max_entries, max_depth, on_progress
        self.seen = 0
        self.visited: set[Path] = set()
        self.skipped: list[tuple[str, str]] = []

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append((relative_path(path, self.root) or ".", reason))

    def _count(self) -> None:
        self.seen += 1
        if self.seen > self.max_entries:
            raise InputError(
                f"'{echo(self.root.name or self.root)}' holds more than {self.max_entries:,} files and folders, the most one "
                f"scan reads (set by {SCAN_MAX_ENTRIES_ENV}); give a smaller folder.")
        if self.on_progress and self.seen % 1000 == 0:
            self.on_progress(self.seen)

    def entries(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """(subfolders, files) directly inside ``folder``, sorted, hidden ones left out."""
        real = folder.resolve()
        if real in self.visited:
            self._skip(folder, "a link to a folder already scanned, not followed again")
            return [], []
        self.visited.add(real)
        folders, files = [], []
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    self._count()
                    if not _visible(entry.name):
                        continue
                    path = folder / entry.name
                    try:
                        if entry.is_symlink() and self.roots is not None and not data_roots.inside(path.resolve(), self.roots):
                            self._skip(path, "a link to outside the folders this dashboard may read, not followed")
                        elif entry.is_dir():
                            folders.append(path)
                        elif entry.is_file():
                            files.append(path)
                        else:  # a FIFO or device would block or never end a read
                            self._skip(path, "a link to nothing" if entry.is_symlink() else "not a regular file")
                    except (OSError, RuntimeError) as error:  # a dangling link or a link loop
                        self._skip(path, f"could not be read ({getattr(error, 'strerror', None) or error})")
        except OSError as error:
            self._skip(folder, f"could not be read ({error.strerror or error})")
        return sorted(folders), sorted(files)

    def files_below(self, folder: Path, depth: int) -> list[Path]:
        """Every file in ``folder`` and its subfolders, ``depth`` being ``folder``'s level below the root."""
        folders, files = self.entries(folder)
        for sub in folders:
            if depth + 1 > self.max_depth:
                self._skip(sub, f"more than {self.max_depth} folder levels deep (set by {SCAN_MAX_DEPTH_ENV}), not scanned")
            else:
                files += self.files_below(sub, depth + 1)
        return sorted(files)


def scan_folder(root: str | Path, *, roots: Sequence[Path] | None = None, max_entries: int | None = None,
                max_depth: int | None = None, on_progress: Callable[[int], None] | None = None) -> DatasetScan:
    """List a class-per-subfolder tree; InputError with one sentence when it is not one.

    A single top folder holding the class folders (how a ZIP of ``data/`` unpacks)
    is stepped into. With ``roots`` (a server's data roots) the folder must lie
    inside them and the scan never leaves them. At most ``max_entries`` entries
    and ``max_depth`` levels are read (defaults: the server's settings);
    ``on_progress`` gets the entries read so far, every thousand.
    """
    root = data_roots.resolve_given(root, roots)
    if not root.is_dir():
        raise InputError(f"'{echo(root)}' is not a folder.")
    walker = _Walker(root, roots, max_entries or settings.scan_max_entries(), max_depth or settings.scan_max_depth(),
                     on_progress)
    subfolders, loose = walker.entries(root)
    if len(subfolders) == 1 and not loose:
        holds_folders = bool(walker.entries(subfolders[0])[0])
        walker.visited.discard(subfolders[0].resolve())  # only peeked into: it is listed again below
    if len(subfolders) == 1 and not loose and holds_folders:
        return scan_folder(subfolders[0], roots=roots, max_entries=max(1, walker.max_entries - walker.seen),
                           max_depth=walker.max_depth, on_progress=on_progress)
    if not subfolders:
        raise InputError(f"'{echo(root.name or root)}' has no class subfolders; arrange images as <folder>/<class name>/<image>.")
    files, owners, empty = [], [], []
    skipped = [(p.name, OUTSIDE_CLASSES) for p in loose]
    for index, folder in enumerate(subfolders):
        found = walker.files_below(folder, 1)
        images = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
        image_set = set(images)
        skipped += [(relative_path(p, root), NOT_AN_IMAGE) for p in found if p not in image_set]
        if not images:
            empty.append(folder.name)
        files += images
        owners += [index] * len(images)
    skipped += walker.skipped
    if not files:
        raise InputError(f"'{echo(root.name or root)}' has class folders but no images in them.")
    return DatasetScan(root, [p.name for p in subfolders], files, np.asarray(owners, np.int64), empty, skipped)

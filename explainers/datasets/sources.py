"""Where a dataset's images come from: a local class-per-subfolder tree or a URI pyarrow can list (s3://, gs://).

The Ray pipeline lists on the driver and reads on the workers: a listing holds,
per image, what a worker needs to read it (``source``), the path a results row
names it by and its true class, classes numbered as the in-process run numbers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from explainers.datasets.evaluation import is_uri
from explainers.datasets.mapping import ClassMapping, map_classes
from explainers.datasets.scan import NOT_AN_IMAGE, OUTSIDE_CLASSES, relative_path, scan_folder
from explainers.errors import InputError, echo
from explainers.inputs.images import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, decode_image
from explainers.models.loading import LoadedModel

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem


@dataclass
class Listing:
    """The images of a dataset a model has classes for, before anything is read."""

    root: str  # the local folder (resolved) or the URI given
    remote: bool  # True for a URI: sources are then paths inside ``root``'s filesystem
    sources: list[str]  # per image: an absolute local path, or the path relative to ``root``
    paths: list[str]  # per image, as results rows name it: relative to a local root, the full URI otherwise
    true: list[int]  # per image: the model output of its folder
    mapping: ClassMapping
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why it was left out)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")


def _filesystem(uri: str) -> tuple[FileSystem, str]:
    """(pyarrow filesystem, path inside it) for ``uri``; InputError in one sentence when pyarrow cannot open it."""
    from pyarrow import ArrowException, fs

    try:
        return fs.FileSystem.from_uri(uri)
    except (ArrowException, OSError, ValueError) as error:
        raise InputError(f"'{echo(uri)}' cannot be opened: {_first_line(error)}.") from None


def _list_uri(uri: str) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(class folders sorted, files relative to ``uri`` under them, skipped) in a URI's tree."""
    from pyarrow import ArrowException, fs

    filesystem, base = _filesystem(uri)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        raise InputError(f"'{echo(uri)}' does not exist.") from None
    except (ArrowException, OSError) as error:
        raise InputError(f"'{echo(uri)}' could not be listed: {_first_line(error)}.") from None
    base = base.rstrip("/")
    files, skipped = [], []
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        relative = PurePosixPath(info.path[len(base) :].lstrip("/"))
        if any(part.startswith((".", "__MACOSX")) for part in relative.parts):
            continue  # hidden, as a local scan leaves them out
        if len(relative.parts) < 2:
            skipped.append((relative.as_posix(), OUTSIDE_CLASSES))
        elif relative.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((relative.as_posix(), NOT_AN_IMAGE))
        else:
            files.append(relative.as_posix())
    if not files:
        raise InputError(f"'{echo(uri)}' holds no images in class folders; arrange them as <uri>/<class name>/<image>.")
    files.sort()
    return sorted({f.split("/", 1)[0] for f in files}), files, skipped


def list_images(data: str | Path, model: LoadedModel, mapping_mode: str = "auto",
                roots: Sequence[Path] | None = None) -> Listing:
    """List ``data`` (a local folder or a URI) and number its class folders for ``model``; InputError when unusable.

    A local folder goes through ``scan_folder`` and ``map_classes`` exactly as the
    in-process evaluation does, so both runs give every image the same true class.
    Images in folders the model has no class for are left out, as there. With ``roots`` (a server's data
    roots, for a folder a visitor typed) the folder must lie inside them and the scan never leaves them.
    """
    if is_uri(str(data)):
        root = str(data).rstrip("/")
        folders, files, skipped = _list_uri(root)
        mapping = map_classes(folders, model, mapping_mode)
        index = {name: i for i, name in enumerate(folders)}
        outputs = [int(mapping.output_of_folder[index[f.split("/", 1)[0]]]) for f in files]
        kept = [(f, o) for f, o in zip(files, outputs) if o >= 0]
        return Listing(root, True, [f for f, _ in kept], [f"{root}/{f}" for f, _ in kept], [o for _, o in kept],
                       mapping, skipped)
    scan = scan_folder(data, roots=roots)
    mapping = map_classes(scan.folders, model, mapping_mode)
    outputs = mapping.output_of_folder[scan.folder_of_file]
    known = np.flatnonzero(outputs >= 0)
    return Listing(str(scan.root), False, [str(scan.files[i]) for i in known],
                   [relative_path(scan.files[i], scan.root) for i in known], [int(outputs[i]) for i in known], mapping,
                   scan.skipped)


class Reader:
    """Reads and decodes a listing's images on a worker: one filesystem per batch, not per file."""

    def __init__(self, root: str, remote: bool) -> None:
        self.filesystem: FileSystem | None = None  # None for local files, read with plain open
        self.base = ""
        if remote:
            self.filesystem, self.base = _filesystem(root)

    def decode(self, source: str, path: str) -> np.ndarray | str:
        """``(H, W, 3)`` uint8 pixels, or the one-sentence reason the image cannot be used."""
        try:
            if self.filesystem is None:
                return decode_image(Path(source), path)
            return decode_image(self._read(self.filesystem, source, path), path)
        except InputError as error:
            return str(error)

    def _read(self, filesystem: FileSystem, source: str, path: str) -> bytes:
        from pyarrow import ArrowException

        try:
            with filesystem.open_input_file(f"{self.base.rstrip('/')}/{source}") as file:
                if file.size() > MAX_IMAGE_BYTES:
                    raise InputError(f"'{echo(path)}' is {file.size() >> 20} MB; an image file may be at most "
                                     f"{MAX_IMAGE_BYTES >> 20} MB.")
                return file.read()
        except (ArrowException, OSError) as error:
            raise InputError(f"'{echo(path)}' could not be read: {_first_line(error)}.") from None

"""A dataset evaluation as a results folder: ``results.json`` plus one Parquet row per image under ``rows/``.

The in-process evaluation and the Ray pipeline both write the rows ``scoring``
gives as this folder; the dashboard and the CLI's reports open it with
``open_results`` and never run the model again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from explainers.datasets.evaluation import Evaluation
from explainers.datasets.mapping import ClassMapping
from explainers.datasets.scoring import RESULT_COLUMNS, ROW_COLUMNS, TOP_K, cam_shape, row_columns
from explainers.errors import InputError, echo
from explainers.inputs.data_roots import check_path
from explainers.models.loading import LoadedModel

_COLUMN_TYPES = {
    "path": pa.string(),
    "true_class": pa.int32(),
    "top_classes": pa.list_(pa.int32()),
    "top_probabilities": pa.list_(pa.float32()),
    "p_true": pa.float32(),
    "least_class": pa.int32(),
    "least_probability": pa.float32(),
    "cam": pa.binary(),
    "error": pa.string(),
}
# The rows' Parquet schema: scoring's columns, in its order, so a scored batch converts as it is.
SCHEMA = pa.schema([(name, _COLUMN_TYPES[name]) for name in ROW_COLUMNS])

INFO_FILE, ROWS_FOLDER = "results.json", "rows"
FORMAT_VERSION = 1
# What a results folder may hold, so that a crafted one cannot make a hosted server read or allocate without end.
MAX_INFO_BYTES = 64 << 20
MAX_ROW_FILES = 10_000
MAX_ROWS = 5_000_000
MAX_ROW_BYTES = 2 << 30  # uncompressed, as the Parquet footers state it
MAX_MAP_SIDE = 512
MAX_INPUT_SIDE = 4096


@dataclass
class ResultsInfo:
    """What a results folder's rows mean; stored as ``results.json`` next to ``rows/``."""

    model: str  # display name
    model_spec: str  # what load_model was called with
    fingerprint: str  # LoadedModel.fingerprint: the network and its preprocessing
    class_names: list[str]
    cam_layer: str | None
    cam_shape: tuple[int, int]  # (h, w) of every row's ``cam``; (0, 0) without a CAM layer
    root: str  # the evaluated folder, or the URI it was read from
    mapping_mode: str
    unknown_folders: list[str]  # class folders the model has no class for, left out
    skipped: list[tuple[str, str]]  # the scan's (path relative to root, why it was left out)
    total: int  # images of known classes
    seconds: float
    runner: str  # "in-process", "ray local" or "ray <address>"
    created: str = ""  # ISO 8601 UTC; write_info fills it when empty
    input_size: tuple[int, int] | None = None  # the model's (H, W), for showing the images at its scale
    version: int = FORMAT_VERSION


def write_info(out: str | Path, info: ResultsInfo) -> Path:
    """Write ``<out>/results.json`` (the folder is made when missing); returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not info.created:
        info.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = out / INFO_FILE
    path.write_text(json.dumps(asdict(info), indent=1) + "\n", encoding="utf-8")
    return path


def write_rows(out: str | Path, columns: dict[str, list] | pa.Table, name: str = "part-00000") -> Path:
    """Write SCHEMA rows as ``<out>/rows/<name>.parquet``; returns its path."""
    folder = Path(out) / ROWS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    table = columns if isinstance(columns, pa.Table) else pa.table(columns, schema=SCHEMA)
    path = folder / f"{name}.parquet"
    pq.write_table(table.cast(SCHEMA), path)
    return path


def row_files(out: str | Path) -> list[Path]:
    """The Parquet files of a results folder, as they are written and read: ``rows/*.parquet``, sorted."""
    return sorted(p for p in (Path(out) / ROWS_FOLDER).glob("*.parquet") if not p.name.startswith((".", "_")))


def clear_rows(out: str | Path) -> None:
    """Remove an earlier run's results.json and Parquet files, so that a run writing the folder again and failing
    midway leaves a folder that does not open, rather than one that mixes two runs."""
    (Path(out) / INFO_FILE).unlink(missing_ok=True)
    for path in row_files(out):
        path.unlink()


def evaluation_columns(ev: Evaluation) -> dict[str, list]:
    """An Evaluation as SCHEMA columns: its scored images, then its unreadable images as error rows."""
    scored = row_columns(paths=ev.files, true=ev.true, top_classes=ev.top_classes,
                         top_probabilities=ev.top_probabilities, p_true=ev.p_true, least_class=ev.least_class,
                         least_probability=ev.least_probability, cams=ev.cams)
    for (file, reason), true in zip(ev.skipped_images, ev.skipped_images_true, strict=True):
        for name in SCHEMA.names:
            scored[name].append(None)
        scored["path"][-1], scored["true_class"][-1], scored["error"][-1] = file, int(true), reason
    return scored


def _folder_name(out: Path) -> str:
    return f"'{echo(out.name or out)}'"


def read_info(out: str | Path, roots: Sequence[Path] | None = None) -> ResultsInfo:
    """``<out>/results.json`` checked field by field; InputError naming the folder and the problem otherwise."""
    out = check_path(Path(out))  # a name too long, say: one sentence, not an OSError
    name = _folder_name(out)
    if not out.is_dir():
        raise InputError(f"{name} is not a folder.")
    path = out / INFO_FILE
    if not path.exists():
        raise InputError(f"{name} holds no {INFO_FILE}, so it is not a results folder "
                         "(`python -m explainers evaluate --out` writes one).")
    _checked_file(path, out, roots)
    if path.stat().st_size > MAX_INFO_BYTES:
        raise InputError(f"{INFO_FILE} in {name} is over {MAX_INFO_BYTES >> 20} MB, more than a results description.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{INFO_FILE} in {name} could not be read as JSON ({error}).") from None
    if not isinstance(data, dict):
        raise InputError(f"{INFO_FILE} in {name} is not a JSON object.")
    if isinstance(data.get("version"), int) and data["version"] > FORMAT_VERSION:
        raise InputError(f"{INFO_FILE} in {name} is format {data['version']}, newer than this tool reads "
                         f"({FORMAT_VERSION}); update the dashboard.")
    required = [f.name for f in fields(ResultsInfo) if f.default is MISSING and f.default_factory is MISSING]
    missing = [key for key in required if key not in data]
    if missing:
        raise InputError(f"{INFO_FILE} in {name} lacks {', '.join(missing)}.")
    try:
        names = data["class_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("class_names is not a non-empty list of names")
        shape = tuple(int(v) for v in data["cam_shape"])
        if len(shape) != 2 or min(shape) < 0 or max(shape) > MAX_MAP_SIDE:
            raise ValueError(f"cam_shape is not two sizes of 0 to {MAX_MAP_SIDE}")
        size = data.get("input_size")
        if size is not None and (len(size) != 2 or not all(1 <= int(v) <= MAX_INPUT_SIDE for v in size)):
            raise ValueError(f"input_size is not two sizes of 1 to {MAX_INPUT_SIDE}")
        info = ResultsInfo(
            model=str(data["model"]), model_spec=str(data["model_spec"]), fingerprint=str(data["fingerprint"]),
            class_names=names, cam_layer=None if data["cam_layer"] is None else str(data["cam_layer"]),
            cam_shape=shape, root=str(data["root"]), mapping_mode=str(data["mapping_mode"]),
            unknown_folders=[str(f) for f in data["unknown_folders"]],
            skipped=[(str(f), str(r)) for f, r in data["skipped"]], total=int(data["total"]),
            seconds=float(data["seconds"]), runner=str(data["runner"]), created=str(data.get("created", "")),
            input_size=None if size is None else (int(size[0]), int(size[1])),
            version=int(data.get("version", FORMAT_VERSION)))
    except (TypeError, ValueError, IndexError) as error:
        raise InputError(f"{INFO_FILE} in {name} has a field of the wrong kind ({error}).") from None
    return info


def _checked_file(path: Path, out: Path, roots: Sequence[Path] | None) -> None:
    """Refuse a file of the results folder that is not a regular file, or that a link takes outside ``roots``."""
    part = path.relative_to(out).as_posix()
    if roots is not None:
        from explainers.inputs.data_roots import inside

        if not inside(path.resolve(), roots):
            raise InputError(f"'{part}' in {_folder_name(out)} leads outside the folders this dashboard may read.")
    if not path.is_file():  # a pipe or a device would block the read, or never end
        raise InputError(f"'{part}' in {_folder_name(out)} is not a regular file.")


def _read_rows(out: Path, roots: Sequence[Path] | None) -> pa.Table:
    name = _folder_name(out)
    files = row_files(out)
    if not files:
        raise InputError(f"{name} holds no Parquet files under {ROWS_FOLDER}/, so it has no results.")
    if len(files) > MAX_ROW_FILES:
        raise InputError(f"{name} holds {len(files):,} Parquet files; a results folder may have at most "
                         f"{MAX_ROW_FILES:,}.")
    parquets, rows, size = [], 0, 0
    for path in files:
        _checked_file(path, out, roots)
        part = path.relative_to(out).as_posix()
        try:
            parquet = pq.ParquetFile(path)
            missing = [c for c in SCHEMA.names if c not in parquet.schema_arrow.names]
            if missing:
                raise InputError(f"'{part}' in {name} lacks the column(s) {', '.join(missing)}.")
            metadata = parquet.metadata
            rows += metadata.num_rows
            size += sum(metadata.row_group(g).total_byte_size for g in range(metadata.num_row_groups))
        except (pa.ArrowException, OSError, ValueError) as error:
            raise InputError(f"'{part}' in {name} is not a readable Parquet file of results ({_first_line(error)}).") from None
        parquets.append((part, parquet))
    # Checked from the footers before any row is read: a few kB of compressed zeros can unpack to gigabytes.
    if rows > MAX_ROWS or size > MAX_ROW_BYTES:
        raise InputError(f"{name} holds {rows:,} rows and {size >> 20:,} MB of data; a results folder may hold at most "
                         f"{MAX_ROWS:,} rows and {MAX_ROW_BYTES >> 30} GB.")
    tables = []
    for part, parquet in parquets:
        try:
            tables.append(parquet.read(columns=SCHEMA.names).cast(SCHEMA))
        except (pa.ArrowException, OSError, ValueError) as error:
            raise InputError(f"'{part}' in {name} is not a readable Parquet file of results ({_first_line(error)}).") from None
    return pa.concat_tables(tables).combine_chunks()


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _fixed_lists(column: pa.ChunkedArray | pa.Array, width: int, what: str, name: str) -> np.ndarray:
    """A list column whose every entry has ``width`` items, as an (N, width) array."""
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(column)
    if len(lengths) and ((lengths != width).any() or values.null_count):
        raise InputError(f"The rows of {name} do not all hold {width} {what}.")
    return values.to_numpy(zero_copy_only=False).reshape(len(lengths), width)


def _cams(column: pa.Array, shape: tuple[int, int], name: str) -> np.ndarray:
    """The float16 maps of a binary column, (N, h, w) float32, read straight from its data buffer."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    count, size = len(column), shape[0] * shape[1]
    lengths = pc.binary_length(column).to_numpy(zero_copy_only=False)
    if count and (lengths != 2 * size).any():
        raise InputError(f"The maps in {name} are not all {shape[0]}x{shape[1]} float16, as results.json says.")
    if count == 0 or size == 0:
        return np.zeros((count, *shape), np.float32)
    offsets = np.frombuffer(column.buffers()[1], np.int32 if column.type == pa.binary() else np.int64)
    start, end = offsets[column.offset], offsets[column.offset + count]
    data = np.frombuffer(column.buffers()[2], np.uint8)[start:end]
    return data.view("<f2").reshape(count, *shape).astype(np.float32)


def open_results(out: str | Path, roots: Sequence[Path] | None = None) -> Evaluation:
    """The Evaluation a results folder holds, rows sorted by path, with no model pass.

    The results carry their own class names, so they open whatever model is loaded.
    With ``roots`` (a hosted dashboard), every file read must lie inside them, links
    followed. InputError, one sentence naming the folder and the problem, when ``out``
    is not a readable results folder or holds more than its limits.
    """
    out = Path(out)
    info = read_info(out, roots)
    name = _folder_name(out)
    table = _read_rows(out, roots)
    failed = table.filter(pc.is_valid(table["error"]))
    table = table.filter(pc.is_null(table["error"]))
    table = table.take(pc.sort_indices(table["path"])) if table.num_rows else table
    for column in RESULT_COLUMNS:
        if table[column].null_count:
            raise InputError(f"{name} has rows with neither a {column} nor an error.")
    if pc.count_distinct(table["path"]).as_py() != table.num_rows:
        raise InputError(f"{name} holds more than one row for some images.")
    classes = len(info.class_names)
    k = min(TOP_K, classes)
    true = table["true_class"].to_numpy(zero_copy_only=False).astype(np.int64)
    least = table["least_class"].to_numpy(zero_copy_only=False)
    top = pc.list_flatten(table["top_classes"]).to_numpy(zero_copy_only=False)
    for what, values in (("true", true), ("least likely", least), ("top", top)):
        if values.size and (values.min() < 0 or values.max() >= classes):
            raise InputError(f"{name} has {what} class indices outside the {classes} classes its {INFO_FILE} names.")
    top = _fixed_lists(table["top_classes"], k, "top classes", name)
    failed = failed.sort_by("path")
    unreadable = list(zip(failed["path"].to_pylist(), failed["error"].to_pylist()))
    return Evaluation(
        root=info.root,
        files=table["path"].to_pylist(),
        true=true,
        top_classes=top.astype(np.int32),
        top_probabilities=_fixed_lists(table["top_probabilities"], k, "top probabilities", name).astype(np.float32),
        p_true=table["p_true"].to_numpy(zero_copy_only=False).astype(np.float32),
        least_class=least.astype(np.int32),
        least_probability=table["least_probability"].to_numpy(zero_copy_only=False).astype(np.float32),
        cams=_cams(table["cam"], info.cam_shape, name),
        class_names=list(info.class_names),
        cam_layer=info.cam_layer,
        mapping=ClassMapping(np.zeros(0, np.int64), info.mapping_mode, list(info.unknown_folders)),
        skipped=list(info.skipped) + unreadable,
        skipped_images=unreadable,
        skipped_images_true=failed["true_class"].to_pylist(),
        total=info.total,
        seconds=info.seconds,
        model_name=info.model,
        runner=info.runner,
        input_size=info.input_size,
    )


def run_info(model: LoadedModel, *, cam_layer: str | None, root: str, mapping: ClassMapping,
             skipped: Sequence[tuple[str, str]], total: int, seconds: float, runner: str) -> ResultsInfo:
    """The results.json of a run of ``model`` over ``root``, in-process or on Ray; ``skipped`` is the scan's list."""
    return ResultsInfo(
        model=model.display_name, model_spec=model.spec, fingerprint=model.fingerprint,
        class_names=list(model.class_names), cam_layer=cam_layer, cam_shape=cam_shape(model, cam_layer), root=root,
        mapping_mode=mapping.mode, unknown_folders=list(mapping.unknown), skipped=[(str(f), str(r)) for f, r in skipped],
        total=total, seconds=seconds, runner=runner, input_size=(int(model.input_size[0]), int(model.input_size[1])))


def write_results(out: str | Path, ev: Evaluation, model: LoadedModel) -> Path:
    """Write an in-process Evaluation as a results folder (replacing an earlier run's rows); returns ``out``."""
    out = Path(out)
    scan_skipped = ev.skipped[: len(ev.skipped) - len(ev.skipped_images)]
    clear_rows(out)
    write_rows(out, evaluation_columns(ev))
    write_info(out, run_info(model, cam_layer=ev.cam_layer, root=ev.root, mapping=ev.mapping, skipped=scan_skipped,
                             total=ev.total, seconds=ev.seconds, runner=ev.runner))
    return out

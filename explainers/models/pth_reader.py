"""Read a PyTorch *legacy* (pre-1.6, non-zip) state-dict file with pickle and NumPy only.

The embedded ImageNet model ships in that format. Adding torch for one file would
cost gigabytes, and the format is simple: three small pickles (magic number,
protocol version, system info), the pickled state dict whose tensors point to
storages by key, the list of storage keys, then each storage's raw bytes
prefixed by its element count.

The unpickler here resolves only the handful of globals such a file needs, so a
crafted file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    """A storage whose bytes come after the pickle; filled in once they are read."""

    def __init__(self, dtype: type) -> None:
        self.dtype = np.dtype(dtype)
        self.data: np.ndarray | None = None


class _TensorRef:
    """A strided view into a storage, materialised after the storages are read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:  # the storages' bytes follow the pickle: views are materialised after they are read
            raise ValueError("a tensor was read before its storage")
        itemsize = flat.dtype.itemsize
        # Torch strides count elements; several tensors here are stored channels-last,
        # so the view must follow the strides rather than assume C order.
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a weights file")

    def persistent_load(self, pid):
        kind, storage_type, key = pid[0], pid[1], pid[2]
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(_STORAGE_DTYPES[storage_type])
        return self.storages[key]


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return the state dict in ``path`` as ``{name: ndarray}`` (dtype as stored).

    Raises ValueError when the file is not a little-endian legacy torch file.
    """
    with open(path, "rb") as f:
        # Every pickle in the file goes through the restricted unpickler, the small ones too:
        # a plain pickle.load would run whatever a tampered file names.
        if _RestrictedUnpickler(f).load() != _LEGACY_MAGIC:
            raise ValueError(f"{path} is not a legacy PyTorch file (bad magic number)")
        if _RestrictedUnpickler(f).load() != _LEGACY_PROTOCOL:
            raise ValueError(f"{path} uses an unknown PyTorch protocol version")
        sys_info = _RestrictedUnpickler(f).load()
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise ValueError(f"{path} was written on a big-endian machine")
        unpickler = _RestrictedUnpickler(f)
        state = unpickler.load()
        storage_keys = _RestrictedUnpickler(f).load()
        for key in storage_keys:
            storage = unpickler.storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            raw = f.read(count * storage.dtype.itemsize)
            storage.data = np.frombuffer(raw, dtype=storage.dtype, count=count)
    return {name: ref.to_numpy() for name, ref in state.items()}

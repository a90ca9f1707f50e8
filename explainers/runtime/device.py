"""The machine the engine computes on: which device TensorFlow uses, in one line for the sidebar, and how busy the
CPU cores are, for the benchmarks."""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import tensorflow as tf


def describe_device() -> str:
    """E.g. ``"GPU: NVIDIA A100 (TensorFlow 2.21.0)"`` or ``"CPU, no GPU found (TensorFlow 2.21.0)"``."""
    gpus = tf.config.list_physical_devices("GPU")
    version = f"TensorFlow {tf.__version__}"
    if not gpus:
        return f"CPU, no GPU found ({version})"
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except (ValueError, RuntimeError):
            names.append(gpu.name)
    return f"GPU: {', '.join(names)} ({version})"


def cpu_seconds_used() -> float | None:
    """CPU-seconds every process has used since boot (Linux's /proc/stat), or None where it cannot be read."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and I/O wait


class CpuMark(NamedTuple):
    """The CPU-seconds used so far, by every process and by this one: where a timed run starts."""

    every_process: float | None  # cpu_seconds_used(); None where it cannot be read
    this_process: float  # time.process_time()


def cpu_mark() -> CpuMark:
    return CpuMark(cpu_seconds_used(), time.process_time())


def cores_of_others(since: CpuMark, wall_seconds: float) -> float | None:
    """How many cores other processes kept busy on average over the ``wall_seconds`` since ``since``, or None where
    /proc/stat cannot be read: a benchmark's timing is only as good as the quiet around it."""
    every_process = cpu_seconds_used()
    if since.every_process is None or every_process is None:
        return None
    own = time.process_time() - since.this_process
    return (every_process - since.every_process - own) / wall_seconds

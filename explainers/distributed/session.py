"""Connecting to Ray for a run: a Ray started on this machine, or a running cluster joined at host:port.

Every way of not getting there (Ray not installed, nothing listening, a port that
is no Ray head) is one sentence within a bounded time, never a hang.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

from explainers.errors import InputError

LOCAL = "local"
DEFAULT_PORT = 6379  # what `ray start --head` listens on unless told otherwise
CONNECT_SECONDS = 10.0  # for the head's port to accept a connection
JOIN_SECONDS = 30.0  # for a driver to join, Ray's own start-up included


def import_ray() -> ModuleType:
    """The ``ray`` module, or InputError in one sentence when it is not installed (it is optional)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # read when Ray starts: no usage report leaves this machine
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("--ray needs Ray Data, which is not installed; pip install 'ray[data]>=2.60,<3'.") from None
    return ray


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of a cluster address as `ray start --head` prints it; the port defaults to Ray's."""
    host, _, port = address.rpartition(":") if ":" in address else (address, "", str(DEFAULT_PORT))
    if "://" in address or not host or not port.isdigit():
        raise InputError(f"'{address}' is not a Ray cluster address; give host:port as `ray start --head` printed "
                         f"it, or local.")
    return host, int(port)


# Joins as a driver and leaves: what ray.init does, in a process that can be stopped when it takes too long.
_JOIN = "import sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); ray.shutdown()"


def _probe(host: str, port: int) -> None:
    """InputError in one sentence, within CONNECT_SECONDS and JOIN_SECONDS, unless a Ray cluster answers at
    host:port. ``ray.init`` itself retries for minutes against a port that is open but is no Ray head."""
    where = f"{host}:{port}"
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise InputError(f"No Ray cluster answers at {where} ({error.strerror or error}); start one with "
                         f"`ray start --head` or use --ray local.") from None
    # A file, not a pipe, for its messages, and a process group of its own: on a timeout the probe and
    # anything it started are stopped, and nothing left holding a pipe can keep this process waiting.
    with tempfile.TemporaryFile("w+") as messages:
        probe = subprocess.Popen([sys.executable, "-c", _JOIN, where], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=messages, start_new_session=True)
        try:
            status = probe.wait(timeout=JOIN_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(probe.pid, signal.SIGKILL)
            probe.wait()
            raise InputError(f"{where} accepts connections but no Ray cluster answered there within "
                             f"{JOIN_SECONDS:.0f} s; give the address `ray start --head` printed.") from None
        messages.seek(0)
        lines = [line for line in messages.read().splitlines() if line.strip() and not line.startswith((" ", "["))]
    if status != 0:
        reason = lines[-1].rstrip(".") if lines else f"exit status {status}"
        raise InputError(f"Could not join the Ray cluster at {where}: {reason}.")


@contextlib.contextmanager
def ray_session(address: str = LOCAL, cpus: float | None = None) -> Iterator[None]:
    """Connected to Ray for the body: a new Ray on this machine (``"local"``, offering ``cpus`` CPU slots) or the
    running cluster at ``host:port``. InputError in one sentence, within CONNECT_SECONDS, when nothing answers."""
    ray = import_ray()
    quiet = {"log_to_driver": False, "logging_level": "WARNING"}
    if address == LOCAL:
        ray.init(address=LOCAL, num_cpus=math.ceil(cpus) if cpus else None, include_dashboard=False, **quiet)
        try:
            yield
        finally:
            ray.shutdown()
        return
    host, port = parse_address(address)
    _probe(host, port)
    ray.init(address=f"{host}:{port}", **quiet)
    try:
        yield
    finally:
        ray.shutdown()

"""Keep TensorFlow's native start-up lines off a command line tool's stderr."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced_under_dash_m():
    """Send file descriptor 2 to /dev/null while the body runs, when started as ``python -m explainers...``.

    TensorFlow's C++ runtime writes its start-up lines (oneDNN, CUDA probing)
    straight to descriptor 2, past Python and ``TF_CPP_MIN_LOG_LEVEL``. Python
    sets ``sys.argv[0]`` to ``"-m"`` while it locates a ``-m`` module, which is
    when this package is imported; a library import or the dashboard is unaffected.
    Yields whether descriptor 2 is silenced.
    """
    if sys.argv[:1] != ["-m"]:
        yield False
        return
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield True
        finally:
            os.dup2(saved, 2)
            os.close(saved)

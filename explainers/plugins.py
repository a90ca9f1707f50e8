"""Plugins: Python files imported before anything else, so the methods and metrics they register appear everywhere.

A plugin registers through the public registries (``explainers.methods.registry.register`` for a method,
``explainers.trust.register_metric`` for a metric); the CLI takes plugins with ``--plugin FILE.py`` on every
command, the dashboard from ``ATTRIBUTION_DASHBOARD_PLUGINS`` (``settings.PLUGINS_ENV``). Importing a file runs
its code with the rights of whoever runs the command or the server: that person, never a visitor, names them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path

from explainers.errors import InputError, echo
from explainers.settings import plugin_paths

_LOADED: dict[Path, str] = {}  # resolved file -> its module's name: each file is imported once per process
_ENVIRONMENT: dict[tuple[str, ...], list[str]] = {}  # the dashboard's plugins -> their errors, once per process
_log = logging.getLogger(__name__)
_LOCK = threading.RLock()  # a server's sessions start in threads: one import at a time (a plugin may load another)


def module_name(path: Path) -> str:
    """A module name of ``path``'s own: two plugins with the same file name in two folders never replace each other."""
    digest = hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
    return f"attribution_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0].strip() if lines else "").rstrip(".")


def _failure(shown: str, path: Path, error: BaseException) -> InputError:
    """One sentence: the plugin, the error's type and first line, and the plugin's own line that raised it."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == str(path)]
    if isinstance(error, SyntaxError) and error.filename == str(path):
        lines = [error.lineno]
    where = f" at line {lines[-1]}" if lines and lines[-1] else ""
    message = _first_line(error)
    return InputError(f"The plugin '{shown}' raised {type(error).__name__}{where}" + (f": {message}." if message else "."))


def load_plugin(path: str | Path) -> str:
    """Import the Python file ``path`` (once per process) and return its module's name.

    InputError with one sentence naming the file when it does not exist, is not a ``.py`` file, or raises
    while it is imported (its type, first line and the plugin's line). What it registered before raising stays.
    """
    shown = echo(path)
    try:
        resolved = Path(path).expanduser().resolve()
        is_file, is_dir = resolved.is_file(), resolved.is_dir()
    except (OSError, RuntimeError, ValueError):
        raise InputError(f"The plugin '{shown}' cannot be opened.") from None
    if is_dir:
        raise InputError(f"The plugin '{shown}' is a folder; give a Python file (.py).")
    if not is_file:
        raise InputError(f"The plugin '{shown}' does not exist.")
    if resolved.suffix != ".py":
        raise InputError(f"The plugin '{shown}' is not a Python file (.py).")
    with _LOCK:
        if resolved in _LOADED:
            return _LOADED[resolved]
        name = module_name(resolved)
        module_spec = importlib.util.spec_from_file_location(name, resolved)
        if module_spec is None or module_spec.loader is None:  # a .py file always has a loader: never seen
            raise InputError(f"The plugin '{shown}' cannot be loaded as a Python module.")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # before running it: its dataclasses and pickles look their module up there
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as error:  # a plugin is anyone's code: whatever it raises is its failure
            sys.modules.pop(name, None)
            raise _failure(shown, resolved, error) from None
        _LOADED[resolved] = name
        return name


def load_plugins(paths: Iterable[str | Path]) -> list[str]:
    """Import each plugin file in order; one sentence per file that failed (the others are loaded all the same)."""
    errors = []
    for path in paths:
        try:
            load_plugin(path)
        except InputError as error:
            errors.append(str(error))
    return errors


def load_environment_plugins() -> list[str]:
    """The plugins ``ATTRIBUTION_DASHBOARD_PLUGINS`` names, imported once per process; their errors, the same on
    every call (each page run calls it; a failed plugin is not run again). Errors go to the server's log once: they
    name the server's files, which are not a visitor's to see."""
    paths = tuple(plugin_paths())
    with _LOCK:
        done = _ENVIRONMENT.get(paths)
        if done is None:
            done = _ENVIRONMENT[paths] = load_plugins(paths)
            for error in done:
                _log.error("%s", error)
    return list(done)


__all__ = ["load_environment_plugins", "load_plugin", "load_plugins", "module_name"]

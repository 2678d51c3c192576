"""`cadence --help` without loading the command line: its text, once printed, is kept in a cache
file keyed by this installation's command sources and the help width, and printed from there
the next time (Typer, Click and every command module cost several times Python's own start).

The key changes whenever a command module changes (path, size, modification time), when Cadence
is installed elsewhere, or when the width Click would format for changes (the terminal's, capped
at 80). The cache lives in $XDG_CACHE_HOME/cadence (~/.cache/cadence); when it cannot be written
the help is simply built each time.
"""
from __future__ import annotations

import io
import os
import sys
from typing import Callable

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
MAX_WIDTH = 80  # Click's default max_width: wider terminals get the same text


def _width() -> int:
    # As shutil.get_terminal_size, which Click's formatter uses: COLUMNS first, then the terminal.
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 80
    return min(columns, MAX_WIDTH)


def _path() -> str | None:
    """The cache file for this installation's commands and width; None when a source is unreadable."""
    parts = [_PACKAGE, str(_width()), os.environ.get("TYPER_USE_RICH", "")]
    commands = os.path.join(_PACKAGE, "commands")
    try:
        names = ["cli.py", "help_cache.py"] + sorted(
            os.path.join("commands", n) for n in os.listdir(commands) if n.endswith(".py"))
        for name in names:
            stat = os.stat(os.path.join(_PACKAGE, name))
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    except OSError:
        return None
    import zlib

    key = f"{zlib.crc32(chr(0).join(parts).encode()):08x}{len(parts):03d}"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cadence", f"help-{key}.txt")


def show() -> bool:
    """Print the cached `cadence --help`; False when there is none yet."""
    path = _path()
    if path is None:
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return False
    if not text:
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True


def capture(run: Callable[[], int]) -> int:
    """Run the real `cadence --help` (`run`), print its text and keep it for `show`."""
    buffer = io.StringIO()
    real = sys.stdout
    sys.stdout = buffer
    try:
        code = run()
    finally:
        sys.stdout = real
    text = buffer.getvalue()
    real.write(text)
    real.flush()
    path = _path()
    if code == 0 and text and path is not None:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            temporary = f"{path}.{os.getpid()}"
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, path)
        except OSError:
            pass
    return code

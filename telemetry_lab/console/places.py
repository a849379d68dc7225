"""Name a place in the code the way a person looks for it: `device.py:88 in run: await ...`."""

from __future__ import annotations

import asyncio
import linecache
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType

__all__ = ["Place", "is_internal", "place_of_frame", "short_place", "stack_of"]

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_MACHINERY = (
    _ASYNCIO_DIR,
    os.path.join(_PACKAGE_DIR, "console") + os.sep,
    os.path.join(_PACKAGE_DIR, "primitives") + os.sep,
    os.path.join(_PACKAGE_DIR, "metrics.py"),
    os.path.join(_PACKAGE_DIR, "_private.py"),
)
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep
_HOSTS = tuple(
    f"{os.sep}site-packages{os.sep}{package}{os.sep}"
    for package in ("IPython", "ipykernel", "tornado", "traitlets", "zmq", "nest_asyncio2")
)
"""Code that runs notebook cells: machinery too, for a person reading where a task is."""
_CELL = re.compile(r"[/\\]ipykernel_\d+[/\\]\d+\.py$")


@dataclass(frozen=True, slots=True)
class Place:
    """One line of code: file, line, function, and the line's text."""

    filename: str
    lineno: int
    function: str
    source: str = ""
    internal: bool = False
    """Part of the machinery (asyncio, the package's primitives, the console itself)."""

    @classmethod
    def of(cls, filename: str, lineno: int, function: str) -> Place:
        source = linecache.getline(filename, lineno).strip()
        return cls(filename, lineno, function, source, is_internal(filename))

    @property
    def short(self) -> str:
        """`device.py:88`, or `cell:3` for a notebook cell."""
        return short_place(self.filename, self.lineno)

    def describe(self) -> str:
        """`device.py:88 in run: await tx.send(reading)`."""
        where = f"{self.short} in {self.function}"
        return f"{where}: {self.source}" if self.source else where

    def __str__(self) -> str:
        return self.describe()


_internal_files: dict[str, bool] = {}


def is_internal(filename: str) -> bool:
    """Whether `filename` is machinery (cached: asked at every task creation)."""
    internal = _internal_files.get(filename)
    if internal is None:
        internal = _internal_files[filename] = (
            filename.startswith(_MACHINERY)
            or (filename.startswith(_STDLIB_DIR) and "site-packages" not in filename)
            or any(host in filename for host in _HOSTS)
        )
    return internal


def short_place(filename: str, lineno: int) -> str:
    """`device.py:88`, or `cell:3` for a notebook cell."""
    if _CELL.search(filename):
        return f"cell:{lineno}"
    return f"{os.path.basename(filename)}:{lineno}"


def place_of_frame(frame: FrameType) -> Place:
    """Where `frame` is now."""
    return Place.of(frame.f_code.co_filename, frame.f_lineno or 0, frame.f_code.co_name)


def stack_of(frames: Iterable[FrameType]) -> tuple[Place, ...]:
    """The places of `frames`, in their order."""
    return tuple(place_of_frame(frame) for frame in frames)

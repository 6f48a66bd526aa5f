"""The one exception type users see: it names the offending file (or config key) and the problem."""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input: `where` is a file path, HDF5 group or config key; `problem` says what is wrong."""

    def __init__(self, where: str | os.PathLike, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")

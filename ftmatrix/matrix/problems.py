"""The problems found while expanding a matrix, each placed where the file wrote it.

Every part of the planner reports through one `Problems`, so that all the mistakes of a
file are listed together (file:line:col, the dotted key, what is wrong).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ftmatrix.matrix.load import Positions, Problem

YamlPath = tuple  # keys and list indices from the document root


class Problems:
    """The problems of one matrix file, appended to a list the caller holds."""

    def __init__(self, positions: Positions, found: list[Problem]):
        self.positions = positions  # where each key of the file was written
        self.found = found

    def add(self, origin: YamlPath, key: str, message: str) -> None:
        """A problem at `origin` (the YAML path of the value at fault), about `key`."""
        self.found.append(self.positions.problem(origin, key, message))

    def extend(self, problems: list[Problem]) -> None:
        self.found.extend(problems)

    def __len__(self) -> int:
        return len(self.found)

    @contextmanager
    def held(self) -> Iterator[list[Problem]]:
        """Problems added inside the block go to the yielded list, not to the file's."""
        saved, self.found = self.found, []
        try:
            yield self.found
        finally:
            self.found = saved

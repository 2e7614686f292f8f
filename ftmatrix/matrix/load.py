"""Reading the YAML a user writes: matrix files, search-space files and `--only` values.

One loader for all of them, with YAML 1.2 core semantics (ruamel.yaml, safe and pure):
`016` is 16 and never octal, `12:30` and `1:30:00` are text and never sexagesimal,
`1e-4` is a float, and only true/false are booleans (`on`, `off`, `yes`, `no` are
text). Every key and list item keeps the line and column it was written at, so that a
problem found later points at file:line:col and the dotted key. Duplicate keys, tags
other than YAML's core ones, and alias bombs are refused here.

Standard library and ruamel.yaml only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Refuse alias expansion past this many nodes ("billion laughs") and deep nesting.
MAX_NODES = 200_000
MAX_DEPTH = 64

YamlPath = tuple  # keys and list indices from the document root

_TAG = "tag:yaml.org,2002:"
# YAML 1.2's core schema: what a value in a file may be.
CORE_TAGS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "str"))
# A date written plainly (2024-01-01) is text here: the core schema has no timestamps.
TEXT_TAGS = frozenset({_TAG + "timestamp"})
MERGE_TAG = _TAG + "merge"


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake in a matrix file."""

    file: str
    line: int
    col: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class MatrixError(Exception):
    """Every problem of a matrix file, reported together."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(map(str, self.problems)))


class Positions:
    """Where each key and list item of the document was written."""

    def __init__(self, file: str):
        self.file = file
        self.marks: dict[YamlPath, tuple[int, int]] = {}

    def find(self, path: YamlPath) -> tuple[int, int]:
        """Line and column of `path`, or of its nearest written ancestor."""
        path = tuple(path)
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (1, 1))

    def problem(self, path: YamlPath, key: str, message: str) -> Problem:
        line, col = self.find(path)
        return Problem(self.file, line, col, key, message)


# ------------------------------------------------------------------------- YAML


class _YamlProblem(Exception):
    """A problem at one node, raised while building and turned into a Problem."""

    def __init__(
        self, node: Node, message: str, *, path: YamlPath | None = None, limit: bool = False
    ):
        self.line, self.col = _mark(node)
        self.message = message
        self.path = path  # where in the document; set by the innermost build
        self.limit = limit  # MAX_NODES or MAX_DEPTH


def parse_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """The data of one YAML document and where each part was written; any problem
    (syntax, duplicate key, unsupported tag, alias bomb) raises MatrixError."""
    positions = Positions(file)
    yaml = YAML(typ="safe", pure=True)
    try:
        with warnings.catch_warnings():
            # a re-defined anchor is valid YAML: the later definition counts
            warnings.simplefilter("ignore")
            node = yaml.compose(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"invalid YAML: {err.problem or err.context}"
        raise MatrixError([Problem(file, line, col, "", message)]) from None
    except YAMLError as err:
        raise MatrixError([Problem(file, 1, 1, "", f"invalid YAML: {err}")]) from None
    if node is None:
        return None, positions
    try:
        return _Builder(yaml, positions).build(node, (), 0), positions
    except _YamlProblem as err:
        key = ".".join(map(str, err.path or ()))
        raise MatrixError([Problem(file, err.line, err.col, key, err.message)]) from None


def read_yaml(path: str | Path) -> tuple[Any, Positions]:
    """The data of a YAML (or JSON) file and where each part was written."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MatrixError([Problem(file, 1, 1, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise MatrixError([Problem(file, 1, 1, "", f"cannot read: {err}")]) from None
    return parse_yaml(text, file)


def read(path: str | Path) -> tuple[dict[str, Any], Positions]:
    """The raw mapping of a matrix file and where each key was written."""
    data, positions = read_yaml(path)
    if not isinstance(data, dict):
        message = "a matrix file must be a mapping with at least `name:`"
        raise MatrixError([positions.problem((), "", message)])
    return data, positions


class _Builder:
    """Turns composed YAML nodes into Python data, recording where each key was.

    Aliases are followed by building their node again, so every value counts
    towards MAX_NODES: a file cannot expand into more data than that."""

    def __init__(self, yaml: YAML, positions: Positions):
        self.constructor = yaml.constructor
        self.positions = positions
        self.count = 0

    def build(self, node: Node, path: YamlPath, depth: int) -> Any:
        try:
            return self.value(node, path, depth)
        except _YamlProblem as err:
            if err.path is None:
                # a limit is the whole entry's doing, not the one value that crossed it
                err.path = path[:1] if err.limit else path
            raise

    def value(self, node: Node, path: YamlPath, depth: int) -> Any:
        self.guard(node, depth, 1)
        self.positions.marks.setdefault(path, _mark(node))
        if isinstance(node, MappingNode):
            if node.tag != _TAG + "map":
                raise _YamlProblem(node, _tag_message(node.tag))
            out: dict[Any, Any] = {}
            for key, (key_node, value_node) in self.pairs(node, path, depth).items():
                self.positions.marks[(*path, key)] = _mark(key_node)
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                raise _YamlProblem(node, _tag_message(node.tag))
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def guard(self, node: Node, depth: int, count: int) -> None:
        self.count += count
        if self.count > MAX_NODES:
            message = "the file expands to too many values (aliases?)"
            raise _YamlProblem(node, message, limit=True)
        if depth > MAX_DEPTH:
            raise _YamlProblem(node, "nesting too deep (a recursive alias?)", limit=True)

    def pairs(self, node: MappingNode, path: YamlPath, depth: int) -> dict[Any, tuple[Node, Node]]:
        """Key -> (key node, value node), with `<<: *anchor` merges resolved as YAML
        defines them: a key written in the mapping overrides a merged one, and of two
        merged mappings the first wins. A key written twice is an error."""
        self.guard(node, depth, len(node.value))
        written: dict[Any, tuple[Node, Node]] = {}
        merged: dict[Any, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                for source in _merge_sources(key_node, value_node):
                    for key, pair in self.pairs(source, path, depth + 1).items():
                        merged.setdefault(key, pair)
                continue
            if not isinstance(key_node, ScalarNode):
                raise _YamlProblem(key_node, "a mapping key must be a plain value")
            key = self.scalar(key_node)
            if key in written:
                first = _mark(written[key][0])[0]
                message = f"duplicate key '{key}' (first written on line {first})"
                raise _YamlProblem(key_node, message, path=(*path, key))
            written[key] = (key_node, value_node)
        return {**merged, **written}

    def scalar(self, node: Node) -> Any:
        if node.tag in TEXT_TAGS:
            return node.value
        if node.tag not in CORE_TAGS:
            raise _YamlProblem(node, _tag_message(node.tag))
        try:
            return self.constructor.construct_object(node)
        except (ValueError, YAMLError):
            kind = node.tag.removeprefix(_TAG)
            raise _YamlProblem(node, f"cannot read {node.value!r} as {kind}") from None


def _merge_sources(key: Node, node: Node) -> list[MappingNode]:
    """The mappings a `<<` key merges: one mapping, or a list of them (an error points
    at the `<<`: an alias's own node may lie far above)."""
    if isinstance(node, MappingNode):
        return [node]
    if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
        return list(node.value)
    got = "a list with a non-mapping" if isinstance(node, SequenceNode) else f"{node.value!r}"
    raise _YamlProblem(
        key, f"`<<` merges a mapping or a list of mappings (e.g. `<<: *common`), got {got}"
    )


def _tag_message(tag: str | None) -> str:
    tag = tag or "?"
    shown = "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
    return (
        f"YAML tag '{shown}' is not supported: values are text, numbers, true/false, "
        "null, lists and mappings"
    )


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1

"""Every malformed matrix under tests/malformed/ is refused before anything runs:
exit code 2, a message naming the file, the line of the mistake and the key, no
traceback, and nothing written.

Each file states what it expects in its first line, `# expect: KEY | TEXT`, and marks
the offending line with `# <-` (or names it with `# line: N`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftmatrix.cli import app

CASES = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))


def expectation(path: Path) -> tuple[str, str, int]:
    lines = path.read_text().splitlines()
    key, text = (part.strip() for part in lines[0].removeprefix("# expect:").split("|", 1))
    explicit = [ln for ln in lines[:3] if ln.startswith("# line:")]
    if explicit:
        line = int(explicit[0].split(":")[1])
    else:
        line = next(i for i, ln in enumerate(lines, 1) if "# <-" in ln)
    return key, text, line


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_malformed_matrix_is_refused_with_line_and_key(path: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written would land here
    key, text, line = expectation(path)
    result = CliRunner().invoke(app, ["validate", str(path)])
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    first = [ln for ln in output.splitlines() if ln.startswith(f"{path}:")]
    assert first, output
    located = [ln for ln in first if re.match(rf"{re.escape(str(path))}:{line}:\d+: ", ln)]
    assert located, f"no problem on line {line}:\n{output}"
    if key:
        assert any(f": {key}: " in ln for ln in located), output
    assert any(text in ln for ln in located), output
    assert list(tmp_path.iterdir()) == []

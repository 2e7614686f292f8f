"""The one YAML loader (matrix/load.py): YAML 1.2 core semantics, positions, duplicate
keys, merges, tags and alias bombs — for matrix files, search-space files and `--only`."""

from __future__ import annotations

import datetime
import textwrap

import pytest

from ftmatrix.matrix.load import MAX_NODES, MatrixError, parse_yaml, read, read_yaml
from ftmatrix.matrix.search import read_space_file


def value(text: str):
    return parse_yaml(f"v: {text}\n", "<test>")[0]["v"]


def problem(text: str):
    with pytest.raises(MatrixError) as err:
        parse_yaml(textwrap.dedent(text), "m.yaml")
    assert len(err.value.problems) == 1
    return err.value.problems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("016", 16),  # YAML 1.1: octal 14
        ("010", 10),  # YAML 1.1: octal 8
        ("0o16", 14),  # YAML 1.2's own octal form
        ("0x1f", 31),
        ("-016", -16),
        ("12:30", "12:30"),  # YAML 1.1: sexagesimal 750
        ("1:30:00", "1:30:00"),  # YAML 1.1: 5400
        ("1e-4", 0.0001),  # YAML 1.1 (pyyaml): the text '1e-4'
        ("3E5", 300000.0),
        ("on", "on"),  # YAML 1.1: true
        ("off", "off"),
        ("yes", "yes"),
        ("No", "No"),
        ("y", "y"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("2024-01-01", "2024-01-01"),  # no timestamps in the core schema: text
        ("'016'", "016"),
        ("!!str 12", "12"),
        ("!!float 1", 1.0),
    ],
)
def test_scalars_read_as_yaml_1_2_core(text, expected):
    got = value(text)
    assert got == expected and type(got) is type(expected)
    assert not isinstance(got, datetime.date)


def test_nan_and_inf_are_read_as_floats_for_the_schema_to_refuse():
    assert value(".nan") != value(".nan")  # nan
    assert value("-.inf") == float("-inf")


def test_positions_of_keys_and_list_items():
    data, positions = parse_yaml("name: a\nbase:\n  train:\n    lr: [0.1,\n      0.2]\n", "f")
    assert data["base"]["train"]["lr"] == [0.1, 0.2]
    assert positions.find(("base", "train", "lr")) == (4, 5)
    assert positions.find(("base", "train", "lr", 1)) == (5, 7)
    assert positions.find(("base", "train", "lr", 7, "x")) == (4, 5)  # nearest ancestor
    assert positions.problem(("name",), "name", "bad").line == 1


@pytest.mark.parametrize(
    ("text", "line", "first", "key"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, 1, "a"),
        ("a:\n  x: 1\n  y: 2\n  x: 3\n", 4, 2, "a.x"),
        ("a: {x: 1, y: 2, x: 3}\n", 1, 1, "a.x"),
        ("- {x: 1}\n- {y: 1,\n   y: 2}\n", 3, 2, "1.y"),
        ("common: &c {lr: 1}\nv: {<<: *c, epochs: 2, epochs: 3}\n", 2, 2, "v.epochs"),
    ],
)
def test_a_key_written_twice_is_refused_with_both_lines(text, line, first, key):
    p = problem(text)
    assert p.line == line and "duplicate key" in p.message and p.key == key
    assert f"first written on line {first}" in p.message


def test_a_merge_override_is_accepted_and_the_written_key_wins():
    data, positions = parse_yaml(
        textwrap.dedent(
            """\
            common: &common {lr: 0.1, epochs: 3}
            fast: {<<: *common, lr: 0.01}
            both:
              <<: [{lr: 1, momentum: 0.9}, *common]
              epochs: 5
            """
        ),
        "m.yaml",
    )
    assert data["fast"] == {"lr": 0.01, "epochs": 3}
    assert positions.find(("fast", "lr")) == (2, 21)  # the override, not the anchor
    # of two merged mappings the first wins; a written key beats both
    assert data["both"] == {"lr": 1, "momentum": 0.9, "epochs": 5}


def test_a_merge_inside_a_merged_mapping_is_resolved():
    data, _ = parse_yaml("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, z: 3}\n", "m")
    assert data["c"] == {"x": 1, "y": 2, "z": 3}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("lr: &x 0.1\nv: {<<: *x}\n", 2),
        ("v:\n  <<: 3\n", 2),
        ("a: &a {x: 1}\nv: {<<: [*a, 4]}\n", 2),
        ("v: {<<: [[1]]}\n", 1),
    ],
)
def test_a_merge_of_anything_but_mappings_is_a_clean_error(text, line):
    p = problem(text)
    assert p.line == line and "`<<` merges a mapping" in p.message


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("v: !!python/object:os.system {}\n", "!!python/object:os.system"),
        ("v: !!python/tuple [1, 2]\n", "!!python/tuple"),
        ("v: !!binary aGVsbG8=\n", "!!binary"),
        ("v: !!set {a, b}\n", "!!set"),
        ("v: !!omap [{a: 1}]\n", "!!omap"),
        ("v: !custom 3\n", "!custom"),
        ("!thing v: 1\n", "!thing"),
    ],
)
def test_tags_beyond_the_core_schema_are_refused_at_their_line(text, tag):
    p = problem(text)
    assert p.line == 1 and f"YAML tag '{tag}' is not supported" in p.message


def test_alias_bombs_stop_at_the_node_limit():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, cur in zip("abcdef", "bcdefg", strict=True):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    p = problem("\n".join(lines) + "\n")
    assert "too many values" in p.message
    assert MAX_NODES < 10**7


def test_merge_bombs_stop_at_the_node_limit_too():
    lines = ["a: &a {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} {{<<: [" + ", ".join([f"*{prev}"] * 10) + "]}")
    p = problem("\n".join(lines) + "\n")
    assert "too many values" in p.message


def test_a_recursive_alias_is_refused():
    p = problem("a: &a [1, *a]\n")
    assert "nesting too deep" in p.message or "too many values" in p.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: [1, 2\nb: 3\n", 2),
        ("a: b: c\n", 1),
        ("a:\n\tb: 1\n", 2),
        ("a: *undefined\n", 1),
        ("a: 1\n---\nb: 2\n", 2),
    ],
)
def test_syntax_errors_say_invalid_yaml_and_where(text, line):
    p = problem(text)
    assert p.message.startswith("invalid YAML") and p.line == line and p.file == "m.yaml"


def test_an_empty_document_is_none_and_a_matrix_must_be_a_mapping(tmp_path):
    assert parse_yaml("# nothing\n", "f")[0] is None
    path = tmp_path / "m.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(MatrixError, match="must be a mapping"):
        read(path)
    with pytest.raises(MatrixError, match="no such file"):
        read_yaml(tmp_path / "missing.yaml")
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(MatrixError, match="cannot read"):
        read(path)


# ------------------------------------------------------------------ space files


def test_a_yaml_space_file_reads_1e_4_as_a_number_and_on_off_as_text(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "lr: {_type: loguniform, _value: [1e-4, 1e-1]}\n"
        "mode: {_type: choice, _value: [on, off, 016]}\n"
    )
    space = read_space_file(path)
    assert space["lr"]["_value"] == [0.0001, 0.1]
    assert space["mode"]["_value"] == ["on", "off", 16]


def test_a_json_space_file_with_tabs_reads_as_json(tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{\n\t"lr": {"_type": "loguniform",\n\t\t"_value": [1e-05, 0.1]}\n}\n')
    assert read_space_file(path) == {"lr": {"_type": "loguniform", "_value": [1e-05, 0.1]}}


@pytest.mark.parametrize(
    ("name", "text", "where", "message"),
    [
        ("s.json", '{"lr": {"_type": "choice"},\n "lr": {}}\n', ":2:2:", "duplicate key 'lr'"),
        ("s.yaml", "lr: {}\nbs: {}\nlr: {}\n", ":3:1:", "duplicate key 'lr'"),
        ("s.yaml", "lr: !!python/object:x {}\n", ":1:5:", "YAML tag"),
        ("s.yaml", "- lr\n- bs\n", ":1:1:", "must be a mapping"),
        ("s.yaml", "lr: [1,\n", ":2:1:", "invalid YAML"),
    ],
)
def test_a_broken_space_file_names_its_own_line(tmp_path, name, text, where, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_space_file(path)
    assert f"{path}{where}" in str(err.value) and message in str(err.value)


# ------------------------------------------------------------------ --only values


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1e-4", 0.0001), ("true", True), ("on", "on"), ("016", 16), ("12:30", "12:30")],
)
def test_only_values_are_read_by_the_same_loader(text, expected):
    assert parse_yaml(text, "<--only>")[0] == expected

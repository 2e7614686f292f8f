"""What the planner refuses instead of crashing or silently meaning something else: each
mistake is reported at its line with its dotted key, and `validate` exits 2 without a
traceback. Also: what it now accepts (include/exclude keyed by an axis's short name)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.identity import job_id
from ftmatrix.matrix import plan
from ftmatrix.matrix.load import MatrixError, Positions
from ftmatrix.matrix.spec import validate_spec

HEAD = """\
name: t
base:
  data: {builtin: digits}
  model: {name: resnet18, pretrained: false}
  train:
    optimizer: {name: sgd, momentum: 0.9, weight_decay: 0.01}
"""
VIT = HEAD.replace("resnet18, pretrained: false", "google/vit-base-patch16-224, pretrained: false")


def write(tmp_path, body: str, head: str = HEAD):
    path = tmp_path / "m.yaml"
    path.write_text(head + textwrap.dedent(body))
    return path


def refused(path) -> list:
    with pytest.raises(MatrixError) as err:
        plan.load_plan(path)
    return err.value.problems


def marked_line(path) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if "# <-" in ln)


def assert_refused(path, key: str, text: str) -> None:
    """One problem on the marked line, with this key and text; `validate` exits 2."""
    problems = refused(path)
    line = marked_line(path)
    assert any(p.line == line and p.key == key and text in p.message for p in problems), problems
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and f"{path}:{line}:" in result.output


# ------------------------------------------------------- keys set twice

TWICE = {
    "a key in two zip groups": (
        """
        zip:
          - train.lr: [0.1, 0.01]  # other
            train.epochs: [1, 2]
          - train.lr: [0.2, 0.02]  # <-
            train.batch_size: [8, 16]
        """,
        "train.lr",
        "'train.lr' (zip[0], line {other}) sets too",
    ),
    "a dotted axis and a labelled subtree axis": (
        """
        grid:
          train.lr: [0.1, 0.01]  # other
          train:  # <-
            short: {lr: 0.5, epochs: 2}
            long: {epochs: 3}
        """,
        "train",
        "this axis sets train.lr, which the axis 'train.lr' (grid, line {other}) sets too",
    ),
    "a subtree axis of mappings and a field axis": (
        """
        grid:
          lora:  # other
            r8: {enabled: true, r: 8, target_modules: [conv1]}
            r16: {enabled: true, r: 16, target_modules: [conv1]}
          lora.r: [4, 32]  # <-
        """,
        "lora.r",
        "this axis sets lora.r, which the axis 'lora' (grid, line {other}) sets too",
    ),
    "a zip key that a grid subtree sets": (
        """
        grid:
          train:  # other
            a: {lr: 0.5}
        zip:
          - train.lr: [0.1, 0.01]  # <-
            train.epochs: [1, 2]
        """,
        "train.lr",
        "which the axis 'train' (grid, line {other}) sets too",
    ),
    "two keys of one zip group": (
        """
        zip:
          - train: [{lr: 0.1}, {lr: 0.2}]  # other
            train.lr: [0.3, 0.4]  # <-
        """,
        "train.lr",
        "which the axis 'train' (zip[0], line {other}) sets too",
    ),
    "seeds beside a subtree that sets the seed": (
        """
        grid:
          train:
            a: {seed: 1, lr: 0.1}
        seeds: [1, 2]  # <-
        """,
        "seeds",
        "give seeds or a train.seed axis, not both",
    ),
}


@pytest.mark.parametrize("case", TWICE, ids=list(TWICE))
def test_a_setting_two_axes_write_is_refused_naming_both(tmp_path, case):
    body, key, text = TWICE[case]
    path = write(tmp_path, body)
    lines = path.read_text().splitlines()
    other = next((i for i, ln in enumerate(lines, 1) if "# other" in ln), 0)
    assert_refused(path, key, text.format(other=other))


def test_a_named_section_and_a_field_inside_it_are_two_settings_not_a_clash(tmp_path):
    p = plan.load_plan(
        write(
            tmp_path,
            """
            grid:
              train.optimizer: [sgd, adam]
              train.optimizer.weight_decay: [0.0, 0.1]
            """,
        )
    )
    got = {(j.config.train.optimizer.name, j.config.train.optimizer.weight_decay) for j in p.jobs}
    assert got == {("sgd", 0.0), ("sgd", 0.1), ("adam", 0.0), ("adam", 0.1)}


# ------------------------------------------------------- short names


def test_include_and_exclude_keyed_by_short_names_mean_the_axes(tmp_path):
    p = plan.load_plan(
        write(
            tmp_path,
            """
            grid:
              train.lr: [0.1, 0.01]
              train.epochs: [1, 2]
              lora.enabled: [false, true]
            exclude:
              - {lr: 0.1, epochs: 2}
              - {lora: true, epochs: 1}
            include:
              - {lr: 0.01, train.grad_clip: 1.0}
            """,
            head=HEAD.replace(
                "pretrained: false}", "pretrained: false}\n  lora: {target_modules: [conv1]}"
            ),
        )
    )
    kept = {(j.config.train.lr, j.config.train.epochs, j.config.lora.enabled) for j in p.jobs}
    assert kept == {(0.1, 1, False), (0.01, 1, False), (0.01, 2, False), (0.01, 2, True)}
    clipped = {j.config.train.lr for j in p.jobs if j.config.train.grad_clip == 1.0}
    assert clipped == {0.01}


@pytest.mark.parametrize(
    ("entry", "key", "text"),
    [
        ("include:\n  - {lr: 0.01}  # <-\n", "lr", "did you mean 'train.lr'"),
        ("include:\n  - {train.epochs: 2, momentum: 0.5}  # <-\n", "momentum", "no field"),
        ("exclude:\n  - {lr: 0.01}  # <-\n", "lr", "exclude keys must be axes"),
        ("exclude:\n  - {train.epoch: 1}  # <-\n", "train.epoch", "did you mean 'train.epochs'"),
    ],
)
def test_an_entry_key_that_is_no_axis_nor_field_is_reported_not_a_keyerror(
    tmp_path, entry, key, text
):
    # no train.lr axis here: `lr` is no short name, and no field either
    path = write(tmp_path, "grid:\n  train.epochs: [1, 2]\n" + entry)
    assert_refused(path, key, text)


# ------------------------------------------------------- labels

LABELS = {
    "a number and a text": ("grid:\n  model.config.x: [1, '1']  # <-\n", "model.config.x"),
    "true and 'true'": ("grid:\n  model.config.flag: [true, 'true']  # <-\n", "model.config.flag"),
    "labels 1 and '1'": (
        "grid:\n  model.config:\n    1: {x: 1}\n    '1': {x: 2}  # <-\n",
        "model.config",
    ),
    "a zip column": (
        "zip:\n  - model.config.x: [2, '2']  # <-\n    train.lr: [0.1, 0.2]\n",
        "model.config.x",
    ),
}


@pytest.mark.parametrize("case", LABELS, ids=list(LABELS))
def test_values_that_read_the_same_in_labels_are_refused(tmp_path, case):
    body, key = LABELS[case]
    assert_refused(write(tmp_path, body, head=VIT), key, "in job labels")


def test_an_include_whose_job_reads_like_another_is_refused(tmp_path):
    path = write(
        tmp_path,
        "grid:\n  model.config.x: [1]\ninclude:\n  - model.config.x: '1'  # <-\n",
        head=VIT,
    )
    assert_refused(path, "include[0]", "both read no label")


def test_a_repeated_value_is_one_job_not_a_label_clash(tmp_path):
    p = plan.load_plan(write(tmp_path, "grid:\n  train.lr: [0.1, 0.1, 0.01]\n"))
    assert [j.label for j in p.jobs] == ["lr=0.1", "lr=0.01"]


# ------------------------------------------------------- include / exclude

ENTRIES = {
    "an exclude value no axis has": (
        "grid:\n  train.lr: [0.1, 0.01]\nexclude:\n  - train.lr: 0.3  # <-\n",
        "train.lr",
        "no point has train.lr = 0.3, so this exclude removes nothing",
    ),
    "an exclude value written as text": (
        "grid:\n  train.lr: [0.1, 0.01]\nexclude:\n  - train.lr: '0.1'  # <-\n",
        "train.lr",
        "removes nothing",
    ),
    "an exclude label that does not exist": (
        "grid:\n  lora:\n    off: {enabled: false}\nexclude:\n  - lora: on  # <-\n",
        "lora",
        "removes nothing",
    ),
    "zip values that never go together": (
        "zip:\n  - train.lr: [0.1, 0.01]\n    train.epochs: [1, 2]\n"
        "exclude:\n  - train.lr: 0.1  # <-\n    train.epochs: 2\n",
        "exclude[0]",
        "never occur together",
    ),
    "excludes that remove every point": (
        "grid:\n  train.lr: [0.1, 0.01]\nexclude:  # <-\n  - train.lr: 0.1\n  - train.lr: 0.01\n",
        "exclude",
        "makes no jobs",
    ),
    "an include that adds nothing": (
        "grid:\n  train.lr: [0.1, 0.01]\ninclude:\n  - train.lr: 0.1  # <-\n",
        "include[0]",
        "adds no setting",
    ),
    "an include that repeats a grid job": (
        "grid:\n  train.lr: [0.1, 0.01]\ninclude:\n  - train.lr: '0.1'  # <-\n",
        "include[0]",
        "makes the same job as 'lr=0.1'",
    ),
}


@pytest.mark.parametrize("case", ENTRIES, ids=list(ENTRIES))
def test_an_entry_that_changes_nothing_is_refused(tmp_path, case):
    body, key, text = ENTRIES[case]
    assert_refused(write(tmp_path, body), key, text)


def test_no_jobs_is_exit_2_not_ok_0_jobs(tmp_path):
    path = write(tmp_path, "grid:\n  train.lr: [0.1]\nexclude:\n  - train.lr: 0.1\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "0 jobs" not in result.output and "makes no jobs" in result.output


def test_an_include_of_a_new_point_is_still_a_job_of_its_own(tmp_path):
    p = plan.load_plan(
        write(
            tmp_path,
            "grid:\n  train.lr: [0.1, 0.01]\nexclude:\n  - train.lr: 0.1\n  - train.lr: 0.01\n"
            "include:\n  - train.lr: 0.5\n",
        )
    )
    assert [j.config.train.lr for j in p.jobs] == [0.5]


# ------------------------------------------------------- any structure at all

ANY_KEYS = [
    "train.lr", "train.epochs", "lr", "epochs", "train", "lora", "lora.r", "lora.enabled",
    "train.optimizer", "train.optimizer.momentum", "train.seed", "model.config.x",
    "model.config", "model.name", "task", "distill.enabled", "nope", "train.loss", "seed",
]  # fmt: skip
ANY_VALUES = st.sampled_from(
    [0.1, 0.01, 1, 2, "1", True, False, None, "sgd", "focal", [], {}, [1, 2], {"a": 1},
     {"lr": 0.1}, {"enabled": True, "r": 4}, {"x": 1}, "resnet18", 1e-4, -1, {"seed": 3},
     {"optimizer": "sgd"}, "text-classification"]
)  # fmt: skip
ANY_KEY = st.sampled_from(ANY_KEYS)
ANY_AXIS = st.one_of(
    st.lists(ANY_VALUES, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", 1, "1", "off"]), ANY_VALUES, max_size=3),
    ANY_VALUES,
)
ANY_ENTRIES = st.lists(st.dictionaries(ANY_KEY, ANY_VALUES, max_size=2), max_size=3)


@st.composite
def structures(draw):
    data = {
        "name": "f",
        "base": {
            "data": {"builtin": "digits"},
            "model": {"name": draw(st.sampled_from(["resnet18", "google/vit-base-patch16-224"]))},
            "lora": {"target_modules": ["conv1"]},
            "train": {
                "optimizer": draw(st.sampled_from(["sgd", {"name": "sgd", "momentum": 0.9}]))
            },
        },
        "grid": draw(st.dictionaries(ANY_KEY, ANY_AXIS, max_size=3)),
        "include": draw(ANY_ENTRIES),
        "exclude": draw(ANY_ENTRIES),
        "seeds": draw(st.lists(st.integers(0, 3), max_size=3)),
    }
    n = draw(st.integers(1, 3))
    data["zip"] = draw(
        st.lists(
            st.dictionaries(ANY_KEY, st.lists(ANY_VALUES, min_size=n, max_size=n), max_size=2),
            max_size=2,
        )
    )
    return data


@settings(max_examples=200, deadline=None)
@given(structures())
def test_any_structure_plans_with_distinct_labels_or_is_refused_cleanly(data):
    """Keys set twice, short names, odd values anywhere: a plan whose jobs all have a
    label of their own, or MatrixError with every problem located; nothing else."""
    positions = Positions("<fuzz>")
    spec, problems = validate_spec(data, positions)
    if spec is None:
        return
    try:
        p = plan.expand(spec, positions=positions, problems=problems)
    except MatrixError:
        return
    if problems:
        assert all(problem.line >= 1 for problem in problems)
        return
    labels = [j.label for j in p.jobs]
    assert p.jobs and len(set(labels)) == len(labels)
    assert all(j.id == job_id(j.config) for j in p.jobs[:20])

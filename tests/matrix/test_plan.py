"""Expansion of a matrix into jobs: grid, zip, include/exclude, seeds, ids, labels."""

from __future__ import annotations

import itertools
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftmatrix.identity import canonical_json, job_id, normalized
from ftmatrix.matrix import plan, points
from ftmatrix.matrix import spec as matrix

BASE = {
    "data": {"builtin": "digits"},
    "model": {"name": "resnet18", "pretrained": False},
    "lora": {"enabled": True, "target_modules": ["conv1"]},
}


def expand(**spec):
    return plan.expand(matrix.MatrixSpec.model_validate({"name": "t", "base": BASE, **spec}))


def write(tmp_path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_grid_is_the_cartesian_product_with_labels_from_varying_axes():
    p = expand(grid={"train.lr": [0.1, 1e-4], "train.epochs": [1, 2, 3], "train.seed": [7]})
    assert len(p.jobs) == 6
    assert p.axes == ["train.lr", "train.epochs"]  # a one-value axis does not vary
    assert [j.label for j in p.jobs[:3]] == [
        "lr=0.1 epochs=1",
        "lr=0.1 epochs=2",
        "lr=0.1 epochs=3",
    ]
    assert p.jobs[3].label == "lr=1e-4 epochs=1"
    assert p.jobs[3].config.train.lr == 1e-4
    assert all(j.config.train.seed == 7 for j in p.jobs)
    assert p.jobs[4].settings == {"train.lr": "1e-4", "train.epochs": "2"}


def test_mapping_values_merge_into_the_subtree_and_labels_name_them():
    p = expand(
        grid={
            "lora": {
                "off": {"enabled": False},
                "r8": {"enabled": True, "r": 8, "alpha": 16},
                "r24": {"enabled": True, "r": 24, "alpha": 48},
            }
        }
    )
    assert [j.label for j in p.jobs] == ["lora=off", "lora=r8", "lora=r24"]
    r24 = p.jobs[2].config.lora
    assert (r24.enabled, r24.r, r24.alpha, r24.target_modules) == (True, 24, 48, ["conv1"])
    assert p.jobs[0].config.lora.enabled is False


def test_zip_axes_move_together():
    p = expand(zip=[{"lora.r": [8, 24], "lora.alpha": [16, 48]}], grid={"train.lr": [0.1, 0.01]})
    pairs = [(j.config.train.lr, j.config.lora.r, j.config.lora.alpha) for j in p.jobs]
    assert pairs == [(0.1, 8, 16), (0.1, 24, 48), (0.01, 8, 16), (0.01, 24, 48)]


def test_exclude_and_include_follow_github_actions_semantics():
    p = expand(
        grid={"train.lr": [0.1, 0.01], "train.epochs": [1, 2]},
        exclude=[{"train.lr": 0.1, "train.epochs": 2}],
        include=[
            {"train.lr": 0.01, "train.grad_clip": 1.0},  # adds a key to matching points
            {"train.lr": 0.5, "train.epochs": 9},  # matches nothing: a new point
            {"train.topk": 3},  # no axis keys: added to every original point
        ],
    )
    got = {(j.config.train.lr, j.config.train.epochs): j.config.train for j in p.jobs}
    assert set(got) == {(0.1, 1), (0.01, 1), (0.01, 2), (0.5, 9)}
    assert got[(0.01, 1)].grad_clip == 1.0 and got[(0.01, 2)].grad_clip == 1.0
    assert got[(0.1, 1)].grad_clip is None
    assert got[(0.5, 9)].grad_clip is None and got[(0.5, 9)].topk == 5  # new point: own keys
    assert got[(0.1, 1)].topk == 3


def test_exclude_matches_a_label():
    p = expand(
        grid={"lora": {"off": {"enabled": False}, "r8": {"r": 8}}, "train.lr": [0.1, 0.2]},
        exclude=[{"lora": "off", "train.lr": 0.2}],
    )
    assert [j.label for j in p.jobs] == ["lora=off lr=0.1", "lora=r8 lr=0.1", "lora=r8 lr=0.2"]


def test_seeds_repeat_every_point():
    p = expand(grid={"train.lr": [0.1, 0.2]}, seeds=[0, 1, 2])
    assert len(p.jobs) == 6
    assert [j.config.train.seed for j in p.jobs] == [0, 1, 2, 0, 1, 2]
    assert p.jobs[1].label == "lr=0.1 seed=1"


def test_settings_that_cannot_matter_collapse_into_one_job():
    p = plan.expand(
        matrix.MatrixSpec.model_validate(
            {
                "name": "t",
                "base": {**BASE, "lora": {"enabled": False}},
                "grid": {"lora.r": [8, 16], "train.optimizer.momentum": [0.0, 0.9]},
            }
        )
    )
    # LoRA is off (so r cannot matter) and AdamW ignores momentum: four points, one job
    assert p.points == 4
    assert len(p.jobs) == 1


def test_ids_equal_the_hash_of_the_normalised_config_and_are_stable(tmp_path):
    path = write(
        tmp_path,
        """
        name: stable
        base:
          data: {builtin: digits}
          model: {name: resnet18}
        grid:
          train.lr: [1e-4, 3e-4]
          train.loss: [ce, focal]
        """,
    )
    a, b = plan.load_plan(path), plan.load_plan(path)
    assert [j.id for j in a.jobs] == [j.id for j in b.jobs]
    assert all(j.id == job_id(j.config) for j in a.jobs)
    assert all(len(j.id) == 12 for j in a.jobs)
    assert a.jobs[0].config.train.loss.name == "cross_entropy"  # "ce" is a spelling of it


def test_yaml_reads_1e_4_as_a_float_and_keeps_off_as_a_label(tmp_path):
    path = write(
        tmp_path,
        """
        name: yaml12
        base: &base
          data: {builtin: digits}
          model: {name: resnet18}
        grid:
          train.lr: [1e-4]
          lora:
            off: {enabled: false}
            on: {enabled: true, target_modules: [conv1]}
        """,
    )
    p = plan.load_plan(path)
    assert p.jobs[0].config.train.lr == 1e-4
    assert [j.settings["lora"] for j in p.jobs] == ["off", "on"]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        """
        name: many
        base:
          data: {builtin: digits}
          model: {name: resnet18}
          train:
            lerning_rate: 0.1
        grid:
          train.lr: [0.1, -1]
          train.loss: [focla]
        exclude:
          - train.epochs: 3
        """,
    )
    with pytest.raises(matrix.MatrixError) as err:
        plan.load_plan(path)
    keys = {p.key for p in err.value.problems}
    assert {"train.lerning_rate", "train.lr", "train.loss.name", "train.epochs"} <= keys
    lines = {p.key: p.line for p in err.value.problems}
    assert lines["train.lerning_rate"] == 7 and lines["train.lr"] == 9


def test_a_huge_matrix_is_refused_by_its_size_without_being_expanded(monkeypatch):
    made = []
    monkeypatch.setattr(points, "Point", lambda *a: made.append(a))
    values = list(range(1, 101))
    spec = {
        "grid": {"train.epochs": values, "train.batch_size": values, "train.topk": values},
        "seeds": list(range(100)),
    }
    with pytest.raises(matrix.MatrixError, match="100,000,000 jobs"):
        expand(**spec)
    assert made == []
    monkeypatch.undo()
    # --max-jobs raises the limit
    spec = {"name": "t", "base": BASE, "grid": {"train.epochs": [1, 2, 3]}, "seeds": [1, 2]}
    with pytest.raises(matrix.MatrixError, match="6 jobs"):
        plan.expand(matrix.MatrixSpec.model_validate(spec), max_jobs=5)
    assert len(plan.expand(matrix.MatrixSpec.model_validate(spec), max_jobs=6).jobs) == 6


def test_teacher_selector_resolves_to_the_teacher_id_which_runs_first(tmp_path):
    p = plan.load_plan("matrices/transfer-distill.yaml")
    students = [j for j in p.jobs if j.config.distill.enabled]
    assert len(students) == 1
    teacher_id = students[0].config.distill.teacher_job
    teacher = next(j for j in p.jobs if j.id == teacher_id)
    assert teacher.config.model.name == "resnet50"
    assert p.jobs.index(teacher) < p.jobs.index(students[0])
    assert students[0].id == job_id(students[0].config)


# ------------------------------------------------------------------ properties

axis_values = {
    "train.lr": st.lists(
        st.sampled_from([0.1, 0.05, 0.01, 1e-3, 3e-4, 1e-4]), min_size=1, max_size=4, unique=True
    ),
    "train.epochs": st.lists(st.integers(1, 9), min_size=1, max_size=4, unique=True),
    "train.batch_size": st.lists(st.integers(1, 512), min_size=1, max_size=4, unique=True),
    "lora.r": st.lists(st.integers(1, 64), min_size=1, max_size=3, unique=True),
}


@st.composite
def matrices(draw):
    keys = draw(st.lists(st.sampled_from(sorted(axis_values)), min_size=1, max_size=4, unique=True))
    grid = {k: draw(axis_values[k]) for k in keys}
    excludes = []
    for _ in range(draw(st.integers(0, 3))):
        ks = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=len(keys), unique=True))
        excludes.append({k: draw(st.sampled_from(grid[k])) for k in ks})
    includes = []
    for i in range(draw(st.integers(0, 3))):
        k = draw(st.sampled_from(keys))
        if draw(st.booleans()):  # matches existing points: adds a key, makes no job
            includes.append({k: draw(st.sampled_from(grid[k])), "train.grad_accumulation": 2})
        else:  # a value outside the axis: a new point
            outside = {"train.lr": 0.5 + i, "train.epochs": 50 + i}.get(k, 1000 + i)
            includes.append({k: outside})
    seeds = draw(st.lists(st.integers(0, 5), max_size=3, unique=True))
    return {"grid": grid, "exclude": excludes, "include": includes, "seeds": seeds}


@settings(max_examples=60, deadline=None)
@given(matrices())
def test_size_is_product_minus_excludes_plus_new_includes(spec):
    grid = spec["grid"]
    keys = list(grid)
    every = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    kept = [
        pt
        for pt in every
        if not any(all(pt[k] == v for k, v in ex.items()) for ex in spec["exclude"])
    ]
    if not kept and not spec["include"]:
        # the excludes remove every point: refused ("no jobs"), not an empty plan
        with pytest.raises(matrix.MatrixError, match="makes no jobs"):
            expand(**spec)
        return
    p = expand(**spec)
    new = {
        tuple(sorted(inc.items()))  # two identical new points are one job
        for inc in spec["include"]
        if not any(all(pt.get(k) == v for k, v in inc.items() if k in grid) for pt in kept)
    }
    assert len(p.jobs) == (len(kept) + len(new)) * max(1, len(spec["seeds"]))
    # ids are unique per distinct normalised config, and stable
    canon = {canonical_json(normalized(j.config)) for j in p.jobs}
    assert len({j.id for j in p.jobs}) == len(canon) == len(p.jobs)
    assert all(j.id == job_id(j.config) for j in p.jobs)
    assert [j.id for j in expand(**spec).jobs] == [j.id for j in p.jobs]

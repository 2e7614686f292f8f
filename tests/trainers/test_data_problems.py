"""Data problems (issue 12, class 6): each is a DataError naming the folder, or the file
and line, never a class made up by accident and never a crash."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftmatrix.config import JobConfig
from ftmatrix.result import read_result
from ftmatrix.trainers import data, sources
from ftmatrix.trainers.job import main
from tests.tiny import make_job, text_job


def image_cfg(path: Path) -> JobConfig:
    return JobConfig.model_validate(
        {
            "task": "image-classification",
            "data": {"path": str(path)},
            "model": {"name": "resnet18", "image_size": 16},
        }
    )


def text_cfg(path: Path) -> JobConfig:
    return JobConfig.model_validate(
        {
            "task": "text-classification",
            "data": {"path": str(path)},
            "model": {"name": "google-bert/bert-base-uncased", "max_length": 8},
        }
    )


def draw(folder: Path, classes: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


# ---------------------------------------------------------------------- images


def empty_class(root: Path) -> str:
    draw(root, {"cat": 4, "dog": 4})
    (root / "bird").mkdir()
    return f"the class folder {root / 'bird'} holds no images"


def empty_class_in_test(root: Path) -> str:
    draw(root / "train", {"cat": 4, "dog": 4})
    draw(root / "test", {"cat": 2})
    (root / "test" / "dog").mkdir()
    return f"the class folder {root / 'test' / 'dog'} holds no images"


def a_test_class_not_in_train(root: Path) -> str:
    draw(root / "train", {"cat": 4, "dog": 4})
    draw(root / "test", {"cat": 2, "dog": 2, "fox": 2})
    return f"{root / 'test'} has class folders that {root / 'train'} lacks: fox"


def one_class(root: Path) -> str:
    draw(root, {"cat": 6})
    return f"{root} has one class folder (cat/): classification needs two"


def no_class(root: Path) -> str:
    root.mkdir()
    (root / "loose.png").write_bytes(b"")
    return f"{root} has no class folders"


@pytest.mark.parametrize(
    "layout", [empty_class, empty_class_in_test, a_test_class_not_in_train, one_class, no_class]
)
def test_an_image_folder_laid_out_wrong_is_a_data_error_naming_the_folder(tmp_path, layout):
    expected = layout(tmp_path / "images")
    with pytest.raises(data.DataError) as err:
        data.load(image_cfg(tmp_path / "images"))
    assert str(err.value) == expected


def test_hidden_folders_are_not_classes(tmp_path):
    draw(tmp_path / "images", {"cat": 5, "dog": 5})
    (tmp_path / "images" / ".ipynb_checkpoints").mkdir()
    assert data.load(image_cfg(tmp_path / "images")).class_names == ["cat", "dog"]


# ----------------------------------------------------------------------- texts


def jsonl(rows: list) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


GOOD = [{"text": f"words {i}", "label": "ab"[i % 2]} for i in range(6)]

TEXT_PROBLEMS = {
    # name: (file name, content, message after "<path>")
    "a line that is not JSON": (
        "t.jsonl",
        jsonl([*GOOD[:2], '{"text": "cut", "label": ', *GOOD[2:]]),
        r":3: not a JSON line \(Expecting value",
    ),
    "a line that is not an object": (
        "t.jsonl",
        jsonl([GOOD[0], ["words", "a"], *GOOD[1:]]),
        r":2: a row must be a JSON object, not a list",
    ),
    "a row without its label": (
        "t.jsonl",
        jsonl([*GOOD[:3], {"text": "no label here"}, *GOOD[3:]]),
        r":4: the row has no label \('label'\)",
    ),
    "a null label": (
        "t.jsonl",
        jsonl([*GOOD, {"text": "x", "label": None}]),
        r":7: the row has no label \('label'\)",
    ),
    "an empty label cell": (
        "t.csv",
        "text,label\nhello,a\nworld,\nagain,b\n",
        r":3: the row has no label \('label'\)",
    ),
    "a row without its text": (
        "t.jsonl",
        jsonl([*GOOD[:4], {"label": "a"}]),
        r":5: the row has no text \('text'\)",
    ),
    "a label that is a list": (
        "t.jsonl",
        jsonl([*GOOD, {"text": "x", "label": ["a"]}]),
        r":7: a label is a string or a number, not \['a'\]",
    ),
    "1 and '1'": (
        "t.jsonl",
        jsonl([{"text": "a", "label": 1}, {"text": "b", "label": 0}, {"text": "c", "label": "1"}]),
        r":3: the label '1' and the label 1 \(.*t\.jsonl:1\) differ only in how they are written",
    ),
    "0 and 0.0": (
        "t.jsonl",
        jsonl([{"text": "a", "label": 0}, {"text": "b", "label": 1}, {"text": "c", "label": 0.0}]),
        r":3: the label 0\.0 and the label 0 \(.*t\.jsonl:1\) differ only in how",
    ),
    "'1' and '1.0' in a CSV": (
        "t.csv",
        "text,label\nhello,1\nworld,0\nagain,1.0\n",
        r":4: the label '1\.0' and the label '1' \(.*t\.csv:2\) differ only in how",
    ),
    "one class": (
        "t.csv",
        "text,label\n" + "".join(f"match {i},sport\n" for i in range(10)),
        r": only the label 'sport': classification needs at least two classes",
    ),
    "bytes that are not UTF-8": (
        "t.csv",
        b"text,label\nna\xefve,a\n".decode("latin-1"),
        r":2: not UTF-8 text \(invalid continuation byte\)",
    ),
}


@pytest.mark.parametrize("problem", list(TEXT_PROBLEMS))
def test_a_text_file_problem_is_a_data_error_naming_the_file_and_line(tmp_path, problem):
    name, content, message = TEXT_PROBLEMS[problem]
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1" if "UTF-8" in problem else "utf-8"))
    with pytest.raises(data.DataError) as err:
        data.load(text_cfg(path))
    assert re.match(re.escape(str(path)) + message, str(err.value)), str(err.value)


def test_labels_written_one_way_each_are_fine_and_keep_their_names():
    # numbers stay numbers, written the same way each time: two classes, named as written
    assert sources.class_names([1, 0, 1, 0], where="x") == ["0", "1"]
    assert sources.class_names([0.5, 1.5], where="x") == ["0.5", "1.5"]
    assert sources.class_names(["neg", "pos", "neg"], where="x") == ["neg", "pos"]
    with pytest.raises(data.DataError, match=r"^x row 2: the row has no label$"):
        sources.class_names(["a", "b", None], where="x")


def test_a_dataset_whose_test_split_has_a_class_train_lacks(tmp_path):
    datasets = pytest.importorskip("datasets")
    train = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": ["x", "y"] * 2})
    test = datasets.Dataset.from_dict({"text": ["e", "f", "g"], "label": ["x", "y", "z"]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(data.DataError) as err:
        data.load(text_cfg(tmp_path / "ds"))
    assert str(err.value) == (
        f"{tmp_path / 'ds'}: the test split has classes without a training example: 'z'"
    )


@pytest.mark.parametrize("problem", ["a line that is not JSON", "1 and '1'", "one class"])
def test_a_job_on_such_data_fails_as_a_data_error_not_a_crash(tmp_path, problem):
    name, content, _ = TEXT_PROBLEMS[problem]
    path = tmp_path / name
    path.write_text(content)
    job = make_job(tmp_path / "job", text_job(path))
    assert main(job) == 1
    result = read_result(job)
    assert (result.status, result.error_class) == ("failed", "data_error")
    assert result.error_message.startswith(str(path))

"""optuna-dashboard opens a search's storage, runs/NAME/search.db, as the README says:

    optuna-dashboard sqlite:///runs/NAME/search.db

Checked through its WSGI app (the one that command serves), without starting a server."""

from __future__ import annotations

import io
import json
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest

from ftmatrix.result import SEARCH_DB

optuna = pytest.importorskip("optuna")
optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="optuna-dashboard missing")


def get(app, path: str):
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def search_storage(root: Path) -> str:
    """A search.db as the runner leaves it: an optuna RDB storage, one study per point."""
    root.mkdir(parents=True)
    url = f"sqlite:///{(root / SEARCH_DB).resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="0123456789ab-cdef0123", storage=url, direction="maximize"
    )
    for value, lr in [(0.7, 1e-3), (0.9, 1e-4), (0.8, 3e-4)]:
        trial = optuna.trial.create_trial(
            params={"train.lr": lr},
            distributions={
                "train.lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)
            },
            value=value,
        )
        study.add_trial(trial)
    return url


def test_optuna_dashboard_lists_the_search_study_and_its_trials(tmp_path):
    url = search_storage(tmp_path / "runs" / "study")
    app = optuna_dashboard.wsgi(url)
    studies = get(app, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["0123456789ab-cdef0123"]
    detail = get(app, f"/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) == 3
    assert max(t["values"][0] for t in detail["trials"]) == pytest.approx(0.9)

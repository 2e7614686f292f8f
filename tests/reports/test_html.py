"""report.html: its data from known run folders, and the page itself in a real headless
browser (Debian's chromium + chromium-driver through selenium; CI installs them with
scripts/browser-deps.sh)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ftmatrix.reports.collect import load
from ftmatrix.reports.html import page_data, write_html
from tests.trackers.runs import grid, write_run

SEARCH = {
    "strategy": "tpe",
    "metric": "val_accuracy",
    "direction": "maximize",
    "seed": 0,
    "prune": "median",
    "trials": 6,
    "space": {"train.lr": "loguniform"},
    "points": [
        {
            "id": "p0",
            "label": "",
            "study": "p0-12345678",
            "budget": 6,
            "best": 3,
            "trials": [
                {"number": n, "state": st, "value": v, "job": None, "label": f"lr={n}"}
                for n, (st, v) in enumerate(
                    [
                        ("complete", 0.6),
                        ("complete", 0.7),
                        ("pruned", 0.4),
                        ("complete", 0.85),
                        ("fail", None),
                        ("complete", 0.8),
                    ]
                )
            ],
        }
    ],
}


@pytest.fixture
def study_run(tmp_path) -> Path:
    root = grid(tmp_path)
    (root / "search.json").write_text(json.dumps(SEARCH))
    return root


def embedded(page: Path) -> dict:
    found = re.search(
        r'<script type="application/json" id="ftm-data">(.*?)</script>', page.read_text(), re.S
    )
    assert found
    return json.loads(found.group(1))


def test_the_page_embeds_everything_and_needs_no_network(study_run):
    page = write_html(study_run)
    assert page == study_run / "report.html"
    text = page.read_text()
    assert not re.search(
        r"<(script|img|iframe)[^>]*\bsrc=|<link\b|@import|https?://(?!www\.w3\.org/2000/svg)", text
    )
    data = embedded(page)
    assert [j["id"] for j in data["jobs"]] == [
        "aaaaaaaaaaaa",
        "bbbbbbbbbbbb",
        "cccccccccccc",
        "dddddddddddd",
        "eeeeeeeeeeee",
    ]
    assert data["best"] == ["bbbbbbbbbbbb", "dddddddddddd", "aaaaaaaaaaaa"]
    assert data["jobs"][1]["metrics"]["test.accuracy"] == 0.9
    assert data["curves"]["bbbbbbbbbbbb"]["val_accuracy"] == [0.3, 0.6, 0.9]
    assert data["classes"] == ["cat", "dog", "bird"]
    assert data["per_class"]["bbbbbbbbbbbb"] == [0.9, 0.85, 0.8]
    assert data["confusion"]["bbbbbbbbbbbb"]["matrix"] == [[9, 1, 0], [0, 9, 1], [1, 0, 9]]
    assert [t["number"] for t in data["search"]["points"][0]["trials"]] == [0, 1, 2, 3, 4, 5]
    write_html(study_run)
    assert page.read_text() == text  # same run folder, same bytes


def test_a_loss_metric_ranks_the_smallest_first_and_labels_cannot_break_the_page(tmp_path):
    jobs = [
        {"id": "x1", "settings": {"note": "</script><b>"}, "state": "done", "acc": 0.6},
        {"id": "x2", "settings": {"note": "plain"}, "state": "done", "acc": 0.7},
    ]
    root = write_run(tmp_path / "r", jobs, axes=["note"])
    data = page_data(load(root), metric="test.loss", searched=None)
    assert data["best"] == ["x2", "x1"] and data["larger"] is False
    page = write_html(root, tmp_path / "out" / "page.html", metric="loss")
    assert "</script><b>" not in page.read_text()
    assert embedded(page)["jobs"][0]["settings"]["note"] == "</script><b>"


# ---------------------------------------------------------------- in a browser


def chromium() -> tuple[str, str] | None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser():
    found = chromium()
    if found is None:
        pytest.skip("chromium and chromium-driver are not installed (scripts/browser-deps.sh)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1300,3300",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=found[1]), options=options
    )
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, page: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return window.ftmatrixReady === true")
    )


def row_ids(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#jobs-table tbody tr')].map(r => r.dataset.job)"
    )


VISIBLE_ROWS = (
    "return [...document.querySelectorAll('#jobs-table tbody tr')].filter(r => !r.hidden).length"
)


def drawn(driver, section: str) -> int:
    """Shapes with a non-empty box in the section's SVGs."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' svg :is(path, circle, rect)')]"
        ".filter(n => { const b = n.getBBox(); return b.width > 0 || b.height > 0; }).length",
        section,
    )


def test_the_page_works_in_a_real_browser(browser, study_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page = write_html(study_run)
    open_page(browser, page)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    # One row per job, best first by the metric; clicking a header reorders.
    assert row_ids(browser) == [
        "bbbbbbbbbbbb",
        "dddddddddddd",
        "aaaaaaaaaaaa",
        "cccccccccccc",
        "eeeeeeeeeeee",
    ]
    header = browser.find_element(By.XPATH, "//table[@id='jobs-table']//th[text()='test acc']")
    header.click()
    assert row_ids(browser)[:3] == ["aaaaaaaaaaaa", "dddddddddddd", "bbbbbbbbbbbb"]
    browser.find_element(By.XPATH, "//table[@id='jobs-table']//th[text()='lora']").click()
    lora = [
        browser.execute_script(
            f"return document.querySelector('tr[data-job=\"{i}\"] td:nth-child(2)').textContent"
        )
        for i in row_ids(browser)
    ]
    assert lora == sorted(lora)

    # Filtering hides rows.
    search = browser.find_element(By.CSS_SELECTOR, "#comparison input[type=search]")
    search.send_keys("r8")
    assert browser.execute_script(VISIBLE_ROWS) == 2
    search.send_keys(Keys.BACKSPACE, Keys.BACKSPACE)
    assert browser.execute_script(VISIBLE_ROWS) == 5

    # Every plot draws.
    for section in ("#curves", "#parallel", "#per-class", "#confusion", "#search"):
        assert drawn(browser, section) > 0, section

    # Hiding a job removes its curve (one per panel) and leaves the others.
    curves = (
        "return document.querySelectorAll(`#curves path.curve[data-job='${arguments[0]}']`).length"
    )
    assert browser.execute_script(curves, "aaaaaaaaaaaa") == 2
    assert browser.execute_script(curves, "bbbbbbbbbbbb") == 2
    browser.find_element(By.CSS_SELECTOR, "input.show[data-job='aaaaaaaaaaaa']").click()
    assert browser.execute_script(curves, "aaaaaaaaaaaa") == 0
    assert browser.execute_script(curves, "bbbbbbbbbbbb") == 2
    browser.find_element(By.CSS_SELECTOR, "input.show[data-job='aaaaaaaaaaaa']").click()
    assert browser.execute_script(curves, "aaaaaaaaaaaa") == 2

    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_run_with_nothing_finished_yet_loads_cleanly(browser, tmp_path):
    jobs = [
        {"id": "p1", "settings": {"train.lr": "0.1"}, "state": "pending"},
        {"id": "f1", "settings": {"train.lr": "0.01"}, "state": "failed"},
    ]
    page = write_html(write_run(tmp_path / "r", jobs, axes=["train.lr"]))
    open_page(browser, page)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    assert sorted(row_ids(browser)) == ["f1", "p1"]
    assert (
        browser.execute_script("return document.querySelectorAll('#parallel, #confusion').length")
        == 0
    )


def test_the_page_shows_sizes_memory_and_a_causal_lm_jobs_metrics(browser, tmp_path):
    from tests.reports.test_report_resources import llm_study

    page = write_html(llm_study(tmp_path), metric="test.exact_match")
    open_page(browser, page)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    titles = "[...document.querySelectorAll('#jobs-table th')].map(t => t.firstChild?.textContent)"
    heads = browser.execute_script(f"return {titles}")
    for shown in ("exact match", "perplexity", "adapter", "peak memory", "tokens/s"):
        assert shown in heads
    cells = browser.execute_script(
        f"const at = {titles}.indexOf(arguments[0]); return [...document.querySelectorAll("
        "'#jobs-table tbody tr')].map(r => r.children[at].textContent)",
        "adapter",
    )
    assert cells == ["64.0 KiB", "32.0 KiB"]  # best exact match first: r=8
    assert row_ids(browser) == ["r80000000000", "r40000000000"]


def test_own_metrics_are_headed_as_in_report_md_and_the_default_says_which(browser, tmp_path):
    from ftmatrix.reports.collect import metric_name
    from ftmatrix.reports.tables import comparison
    from tests.reports.test_own_metrics import own_only

    root = own_only(tmp_path)
    page = write_html(root)  # no accuracy reported: sorted by test.exact
    open_page(browser, page)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    titles = "[...document.querySelectorAll('#jobs-table th')].map(t => t.firstChild?.textContent)"
    heads = browser.execute_script(f"return {titles}")
    study = load(root)
    md_heads = comparison(study, metric_name(None, study.jobs)).headers
    assert "exact" in heads and "mean err" in heads
    assert {"exact", "mean err"} <= set(md_heads)  # the same names in report.md
    assert not any(h and h.startswith("test.") for h in heads)
    chips = browser.execute_script(
        "return [...document.querySelectorAll('.chip')].map(c => c.textContent)"
    )
    assert any(c.startswith("best exact: 0.875") for c in chips), chips
    note = browser.execute_script("return document.getElementById('metric-note').textContent")
    assert note.startswith("No job reported test accuracy: compared by test.exact")
    assert row_ids(browser)[0] == "bbbbbbbbbbbb"  # the largest exact first
    parallel = browser.execute_script("return document.querySelector('#parallel h2').textContent")
    assert parallel == "Settings → exact"

"""report.html at 1,000 jobs: the page's size, the time to write it, and the time headless
chromium takes to load and draw it, and to sort the table and draw 200 jobs' curves.

Baselines measured in the same run: the same page for 10 jobs (load and size), and the
Markdown report without plots of the same 1,000 jobs (write time). Prints the ratios.
Needs chromium, chromium-driver and selenium (scripts/browser-deps.sh).

    .venv/bin/python benchmarks/html_report.py
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

JOBS = 1_000
SMALL = 10
EPOCHS = 20
CLASSES = [f"class{i}" for i in range(10)]
LOADS = 3  # page loads measured; the median is printed


def build(root: Path, jobs: int) -> Path:
    from tests.trackers.runs import write_run

    specs = []
    for i in range(jobs):
        settings = {
            "train.lr": str([0.1, 0.01, 0.001, 0.0001][i % 4]),
            "train.batch_size": str([16, 32, 64, 128, 256][(i // 4) % 5]),
            "model.name": ["resnet18", "vit_b_16", "mobilenet_v3_small"][(i // 20) % 3],
            "train.seed": str(i // 60),
        }
        state = "failed" if i % 50 == 7 else "done"
        specs.append(
            {
                "id": f"{i:012x}",
                "settings": settings,
                "state": state,
                "acc": 0.5 + (i % 97) / 200,
                "epochs": EPOCHS,
            }
        )
    axes = ["train.lr", "train.batch_size", "model.name", "train.seed"]
    return write_run(root, specs, axes=axes, name=f"bench{jobs}", classes=CLASSES)


def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1300,1000")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def load_seconds(driver, page: Path) -> float:
    """Navigation start to the first frame on screen with everything drawn (the page's
    window.ftmatrixDrawn, in its own clock); the median of LOADS loads."""
    from selenium.webdriver.support.ui import WebDriverWait

    times = []
    for _ in range(LOADS):
        driver.get("about:blank")
        driver.get(page.as_uri())
        wait = WebDriverWait(driver, 120, poll_frequency=0.05)
        times.append(wait.until(lambda d: d.execute_script("return window.ftmatrixDrawn")) / 1000)
    return statistics.median(times)


def interaction_seconds(driver, script: str) -> float:
    return driver.execute_script(
        f"const t = performance.now(); {script}; return (performance.now() - t) / 1000"
    )


def main() -> None:
    from ftmatrix.reports.html import write_html
    from ftmatrix.reports.report import write

    tmp = Path(tempfile.mkdtemp())
    driver = None
    try:
        big = build(tmp / "runs" / "big", JOBS)
        small = build(tmp / "runs" / "small", SMALL)
        start = time.perf_counter()
        write(big, plots=False)
        markdown = time.perf_counter() - start
        start = time.perf_counter()
        page = write_html(big)
        html = time.perf_counter() - start
        small_page = write_html(small)
        driver = browser()
        small_load = load_seconds(driver, small_page)
        big_load = load_seconds(driver, page)
        sort = interaction_seconds(
            driver, "document.querySelector('#jobs-table th[data-col]').click()"
        )
        draw = interaction_seconds(
            driver, "[...document.querySelectorAll('#comparison button')][1].click()"
        )
        size, small_size = page.stat().st_size, small_page.stat().st_size
        print(f"report.html, {JOBS} jobs x {EPOCHS} epochs, {len(CLASSES)} classes")
        small_kb = f"{small_size / 1e3:.0f} kB"
        print(f"  page size        {size / 1e6:7.2f} MB", end="")
        print(f"   ({size / small_size:.0f}x the {SMALL}-job page, {small_kb})")
        print(f"  write            {html:7.2f} s    ({html / markdown:.2f}x", end="")
        print(f" report.md without plots, {markdown:.2f} s)")
        print(f"  load and draw    {big_load:7.2f} s    ({big_load / small_load:.1f}x", end="")
        print(f" the {SMALL}-job page, {small_load:.2f} s)")
        print(f"  sort by a column {sort:7.3f} s")
        print(f"  draw 200 curves  {draw:7.3f} s")
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The runs page in headless Chromium (Debian's, through Playwright): table, charts, live refresh.

Each wait is on the page's own state (``window.weftUI``), never a sleep.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi")

import weft.train as wt
from weft.train._runs_ui._server import RunsPageServer

CHROMIUM = os.environ.get("WEFT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _skip_reason() -> str | None:
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "playwright imports greenlet, which turns the GIL back on in a free-threaded interpreter"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install weft[ui-test])"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("page") / "weft.db"
    tracker = wt.Tracker(path)
    ids = {}
    for i in range(30):
        tags = {"baseline": True} if i % 5 == 0 else {}
        with tracker.start_run(f"sweep-{i:02d}", params={"lr": round(0.001 * (i + 1), 4), "depth": i % 3},
                               tags=tags) as run:
            ids[run.name] = run.id
            for step in range(200):
                run.log({"loss": (i + 1) / (step + 1) + 0.01 * i, "acc": min(1.0, step / (100 + i))})
    artifact = path.parent / "model.safetensors"
    artifact.write_bytes(b"x")
    with tracker.start_run("with-artifact", params={"lr": 0.5}) as run:
        ids[run.name] = run.id
        run.log({"loss": 1.0})
        run.log_artifact(artifact)
    tracker.close()
    return path, ids


@pytest.fixture(scope="module")
def server(db: tuple[Path, dict[str, str]]) -> Iterator[RunsPageServer]:
    with RunsPageServer(db[0], port=0) as page_server:
        yield page_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="weft-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=ARGS,
                                                           viewport={"width": 1280, "height": 1000})
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any, server: RunsPageServer) -> Iterator[Any]:
    tab = browser.new_page()
    errors: list[str] = []
    hosts: set[str] = set()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("request", lambda request: hosts.add(urlparse(request.url).hostname or request.url.split(":")[0]))
    tab.goto(server.url + "/")
    tab.wait_for_function("window.weftUI && window.weftUI.state.ready")
    yield tab
    tab.close()
    assert errors == [], errors
    assert hosts <= {"127.0.0.1", "data"}, f"the page loaded from elsewhere: {hosts}"


def visible_names(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#table tbody tr td:nth-child(2)", "cells => cells.map(c => c.textContent)"))


COUNT_PIXELS = """([selector, colors]) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const targets = colors.map(c => [parseInt(c.slice(1, 3), 16), parseInt(c.slice(3, 5), 16), parseInt(c.slice(5, 7), 16)]);
  const counts = targets.map(() => 0);
  let ink = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] === 0) continue;
    ink += 1;
    targets.forEach((t, j) => {
      if (Math.abs(data[i] - t[0]) < 40 && Math.abs(data[i + 1] - t[1]) < 40 && Math.abs(data[i + 2] - t[2]) < 40) counts[j] += 1;
    });
  }
  return {ink, counts};
}"""


def test_table_lists_sorts_and_filters(page: Any) -> None:
    assert page.evaluate("weftUI.state.total") == 31
    assert len(visible_names(page)) == 31
    headers = page.eval_on_selector_all("#table thead th", "ths => ths.map(t => t.dataset.column || '')")
    assert headers[:5] == ["", "name", "status", "created", "duration"] and "param:lr" in headers
    page.click('#table th[data-column="param:lr"]')
    page.wait_for_function("weftUI.state.sort === 'param:lr' && weftUI.state.order === 'desc' && "
                           "weftUI.state.rows[0].name === 'with-artifact'")
    assert visible_names(page)[:3] == ["with-artifact", "sweep-29", "sweep-28"]
    page.click('#table th[data-column="param:lr"]')
    page.wait_for_function("weftUI.state.order === 'asc' && weftUI.state.rows[0].name === 'sweep-00'")
    assert visible_names(page)[:2] == ["sweep-00", "sweep-01"]
    page.fill("#filter", "lr < 0.0125 and tag:baseline")
    page.press("#filter", "Enter")
    page.wait_for_function("weftUI.state.filter === 'lr < 0.0125 and tag:baseline' && weftUI.state.total === 3")
    assert visible_names(page) == ["sweep-00", "sweep-05", "sweep-10"]
    page.fill("#filter", "lr <")
    page.press("#filter", "Enter")
    page.wait_for_function("weftUI.state.lastError !== null")
    assert "ends too early" in page.inner_text("#error")
    # the columns shown are the user's choice
    page.click("#columns summary")
    page.check('#column-list input[data-column="tag:baseline"]')
    page.wait_for_selector('#table th[data-column="tag:baseline"]')
    page.uncheck('#column-list input[data-column="tag:baseline"]')
    page.evaluate("localStorage.removeItem('weft-columns')")


def test_two_runs_draw_two_series_and_controls_redraw(page: Any, db: tuple[Path, dict[str, str]],
                                                      tmp_path: Path) -> None:
    a, b = db[1]["sweep-03"], db[1]["sweep-20"]
    page.check(f'#table tr[data-run="{a}"] input[type=checkbox]')
    page.check(f'#table tr[data-run="{b}"] input[type=checkbox]')
    page.wait_for_function("weftUI.state.charts.has('loss') && weftUI.state.series.size === 4 && "
                           "weftUI.state.charts.get('loss').plot.series.length === 3")
    colors = page.evaluate(f"[weftUI.state.selected.get('{a}').color, weftUI.state.selected.get('{b}').color]")
    canvas = '.chart[data-metric="loss"] canvas'
    drawn = page.evaluate(COUNT_PIXELS, [canvas, colors])
    assert drawn["counts"][0] > 100 and drawn["counts"][1] > 100, drawn
    before = page.evaluate(f"document.querySelector('{canvas}').toDataURL()")
    draws = page.evaluate("weftUI.state.draws")
    page.select_option("#x-mode", "relative")
    page.wait_for_function(f"weftUI.state.xMode === 'relative' && weftUI.state.draws > {draws}")
    relative = page.evaluate(f"document.querySelector('{canvas}').toDataURL()")
    assert relative != before
    page.select_option("#x-mode", "step")
    page.wait_for_function("weftUI.state.xMode === 'step'")
    unsmoothed = page.evaluate(f"document.querySelector('{canvas}').toDataURL()")
    page.fill("#smoothing", "0.9")
    page.wait_for_function("weftUI.state.smoothing === 0.9")
    smoothed = page.evaluate(f"document.querySelector('{canvas}').toDataURL()")
    assert smoothed != unsmoothed
    page.check("#log-scale")
    page.wait_for_function("weftUI.state.logScale && weftUI.state.charts.get('loss').plot.scales.y.distr === 3")
    assert page.evaluate("weftUI.state.parallelDraws") >= 1
    shot = tmp_path / "compare.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_a_metric_logged_while_open_appears_within_two_seconds(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    tracker = wt.Tracker(path)
    run = tracker.start_run("live", params={"lr": 0.1})
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)})
    with RunsPageServer(path, port=0) as server:
        tab = browser.new_page()
        try:
            tab.goto(server.url + "/")
            tab.wait_for_function("window.weftUI && weftUI.state.ready && weftUI.state.rows.length === 1")
            tab.evaluate(f"weftUI.select(['{run.id}'])")
            tab.wait_for_function(f"weftUI.lastStep('{run.id}', 'loss') === 4 && weftUI.state.cursor !== null")
            run.log({"loss": 0.01}, step=50)
            tab.wait_for_function(f"weftUI.lastStep('{run.id}', 'loss') === 50", timeout=2000)
            run.finish()
            tab.wait_for_function(f"weftUI.state.info.get('{run.id}').status === 'finished'", timeout=5000)
        finally:
            tab.close()
    tracker.close()


def test_run_page(page: Any, db: tuple[Path, dict[str, str]]) -> None:
    run_id = db[1]["with-artifact"]
    page.click(f'#table tr[data-run="{run_id}"] a')
    page.wait_for_function(f"weftUI.state.view === 'run' && weftUI.state.runPage === '{run_id}'")
    text = page.inner_text("#run-view")
    assert "with-artifact" in text and "lr" in text and "0.5" in text
    assert "model.safetensors" in text and "loss" in text and "finished" in text

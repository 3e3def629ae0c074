"""The dashboard in Debian's headless Chromium while the real runtime learns a stream with a
known drift: the accuracy chart fills, the drift marker appears, a screenshot is saved."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from stream.config import load_settings
from stream.service import build_embedded, serve
from stream.synth import sea_stream

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("Debian's chromium and chromium-driver are not installed (`make system-deps` installs them)", allow_module_level=True)

from selenium import webdriver  # noqa: E402 - only once chromium is known to be there
from selenium.webdriver.chrome.service import Service  # noqa: E402

DRIFT_AT = 6000


def _until(what, check, timeout_s=90.0, every_s=0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def test_the_dashboard_charts_accuracy_and_marks_the_drift(tmp_path, browser):
    settings = load_settings(
        pipeline="demo", learner="driftmoe", seed=3, batch_size=64, http_port=0, publish_every_s=0.25,
        snapshot_dir=tmp_path / "snapshots", alert_stall_after_s=0,
    )  # fmt: skip
    embedded = build_embedded(settings, sea_stream(20_000, 3, DRIFT_AT), rate=2500)
    pipe = embedded.pipeline
    server = serve(pipe, settings)
    stop = threading.Event()
    runner = threading.Thread(target=pipe.run, kwargs={"max_events": 20_000, "stop": stop}, daemon=True)
    embedded.feeder.start()
    runner.start()
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        js = browser.execute_script
        first = _until("the first points", lambda: js("return window.driftline.points('demo')") >= 3)
        _until("the chart to grow", lambda: js("return window.driftline.points('demo')") > first + 3)
        marks = _until("a drift marker", lambda: js("return window.driftline.markers('demo')"))
        # the marker sits where the alert fired: after the change, on the chart's plot area
        alert_at = {a.id: a.event_index for a in pipe.alerts.since() if a.kind == "drift"}
        assert any(m["id"] in alert_at and DRIFT_AT <= m["x"] < DRIFT_AT + 2000 for m in marks), (marks, alert_at)
        section = browser.find_element("id", "pipeline-demo")
        assert int(section.get_attribute("data-markers")) >= 1
        row = _until("the alert's row", lambda: browser.find_elements("css selector", "#alerts tr.drift, #alerts tr.resolved"))
        assert "adwin on loss" in row[0].text or "error back to" in row[0].text
        stats = {s.get_attribute("data-stat"): s.find_element("tag name", "b").text for s in section.find_elements("css selector", ".stat")}
        assert stats["version"].startswith("v") and int(stats["version"][1:]) > 0
        assert stats["rate"] not in ("–", "0") and stats["events"] != "–"
        _until("the router chart", lambda: browser.find_elements("css selector", "#pipeline-demo .router canvas"))
        # the canvas has drawn something besides the background
        painted = js(
            "const c = document.querySelector('#pipeline-demo .accuracy canvas');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
        )
        assert painted > 1000
        shot = Path(tmp_path) / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        stop.set()
        runner.join(timeout=60)
        embedded.feeder.stop()
        server.stop()

"""The web console in real headless Chromium (Debian's chromium and chromedriver) against the real daemon: the
dashboard's live heatmap changes, the ack button ends a latched fall from a replayed recording, clicks in the
zone editor make a polygon whose YAML has the clicked coordinates and passes check-config, and an uploaded
photo shows its heatmap. Screenshots go to the test's directory; with EDGE_DEPTH_SCREENSHOTS=1 they replace the
README's (docs/console-dashboard.png, console-editor.png, console-photo.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from edge_depth.config import check_config
from tests.support.broker import Mosquitto
from tests.support.daemon import REPO, Daemon
from tests.test_web_api import PHOTO, console_cameras, fall_recording, http, start

pytestmark = pytest.mark.slow

DOCS = REPO / "docs"
CLIP = REPO / "tests" / "fixtures" / "video" / "solidWhiteRight.mp4"
CLICKS = ((0.2, 0.4), (0.6, 0.35), (0.7, 0.8), (0.25, 0.85))  # normalised positions on the editor's image


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    for program in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        assert Path(program).exists(), (
            f"{program} is needed (Debian packages chromium and chromium-driver: see .ci/run)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--window-size=1280,1000", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def value(driver: WebDriver, element_id: str) -> str:
    """The current ``value`` of a form element."""
    return driver.find_element(By.ID, element_id).get_attribute("value") or ""


def shot(driver: WebDriver, directory: Path, name: str) -> Path:
    """Screenshot ``name`` into ``directory``, and into docs/ with EDGE_DEPTH_SCREENSHOTS=1."""
    path = directory / name
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("EDGE_DEPTH_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / name)
    return path


def test_console_in_chromium(  # noqa: PLR0915 -- one daemon and one browser for the whole tour
    mqtt_broker: Mosquitto,
    int8_ir: Path,
    tmp_path: Path,
    run_daemon: Callable[..., Daemon],
    browser: WebDriver,
) -> None:
    recording = fall_recording(tmp_path / "hall.npz", duration_s=90)
    daemon, base = start(run_daemon, mqtt_broker, int8_ir, console_cameras(recording, CLIP), web={})

    # Dashboard: the live heatmap of the replayed camera changes over time.
    browser.get(base + "/")
    heat = 'section[data-camera="hall"] img.heat'
    wait(browser, lambda d: d.execute_script(f"return document.querySelector('{heat}')?.naturalWidth || 0") > 0)
    image = browser.find_element(By.CSS_SELECTOR, heat)
    first = image.screenshot_as_png
    # Waits (it does not sleep) until the live image differs from the first one taken.
    wait(browser, lambda _d: image.screenshot_as_png != first)
    wait(browser, lambda d: "fps" in d.find_element(By.CSS_SELECTOR, 'section[data-camera="hall"] .facts').text)

    # A latched fall shows as an open alert with an acknowledge button; clicking it ends the fall.
    fall_row = '#open tbody tr[data-id*="-fall-"]'
    button = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"{fall_row} button.ack"), 60)[0]
    row_id = browser.find_element(By.CSS_SELECTOR, fall_row).get_attribute("data-id")
    shot(browser, tmp_path, "console-dashboard.png")
    button.click()
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, fall_row), 20)
    events = http("GET", base + "/api/events").json()["events"]
    assert any(e["id"] == row_id and e["type"] == "end" and e["reason"] == "acknowledged" for e in events)

    # Zone editor: four clicks draw a polygon; the daemon measures it live; the YAML has the clicked corners.
    browser.get(base + "/editor?camera=hall")
    wait(browser, lambda d: d.execute_script("return document.getElementById('image').naturalWidth") > 0)
    wait(browser, lambda d: "door" in value(d, "yaml"))
    view = browser.find_element(By.ID, "image")
    width, height = view.size["width"], view.size["height"]
    for x, y in CLICKS:
        # Offsets are from the element's centre in Selenium 4.
        ActionChains(browser).move_to_element_with_offset(
            view, x * width - width / 2, y * height - height / 2
        ).click().perform()
    wait(browser, lambda d: d.find_element(By.ID, "probe").text.startswith("Live: occupied"), 15)
    name = browser.find_element(By.ID, "name")
    name.clear()
    name.send_keys("desk")
    shot(browser, tmp_path, "console-editor.png")
    browser.find_element(By.ID, "finish").click()
    wait(browser, lambda d: "desk" in value(d, "yaml"), 15)
    text = value(browser, "yaml")
    browser.find_element(By.ID, "copy").click()
    assert browser.find_element(By.ID, "yaml-errors").text == ""
    block = yaml.safe_load(text)["alerts"]
    desk = next(z for z in block["zones"] if z["name"] == "desk")
    assert len(desk["polygon"]) == len(CLICKS)
    for (x, y), (cx, cy) in zip(desk["polygon"], CLICKS, strict=True):
        assert abs(x - cx) < 0.01 and abs(y - cy) < 0.01, (desk["polygon"], CLICKS)
    assert block["fall"] == {"enabled": True}  # the camera's other settings stay
    config = tmp_path / "edited.yaml"
    config.write_text(
        yaml.safe_dump(
            {"model": {"path": str(int8_ir)}, "cameras": [{"name": "hall", "source": str(recording), "alerts": block}]}
        )
    )
    code, summary = check_config(config)
    assert code == 0, summary

    # Try a photo: the upload's heatmap shows beside it; the same photo again comes from the cache.
    browser.get(base + "/photo")
    browser.find_element(By.ID, "file").send_keys(str(PHOTO))
    browser.find_element(By.ID, "go").click()
    wait(browser, lambda d: d.find_element(By.ID, "status").text.startswith("inferred in"), 60)
    wait(browser, lambda d: d.execute_script("return document.getElementById('heatmap').naturalWidth") > 0)
    assert (browser.find_element(By.ID, "dl-png").get_attribute("href") or "").endswith(".png")
    shot(browser, tmp_path, "console-photo.png")
    browser.find_element(By.ID, "go").click()
    wait(browser, lambda d: d.find_element(By.ID, "status").text.startswith("answered from the cache"), 30)
    code, _ = daemon.terminate()
    assert code == 0

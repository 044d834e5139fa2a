"""A person's path through the web app in a real headless Chromium (Debian's), on a real worker.

Create a subscription from two arXiv ids and a query, publish more papers, read the alerts
with their evidence, mark one not relevant, open the feed, search, open a paper. Every page
is saved as a screenshot in the folder the test prints (``ASTRO_SCREENSHOTS`` if set).
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import paper_bytes, produce

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Debian's chromium and chromium-driver are needed (make system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ASTRO_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


def screenshot(driver: Any, folder: Path, name: str) -> Path:
    """The whole page (the window grows to the page's height, up to 4000 px)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(1000, min(int(height) + 100, 4000)))
    driver.execute_script("window.scrollTo(0, 0)")
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def follow(driver: Any, element: Any) -> None:
    """Click a link or submit button and wait until the next page has replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(page))
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def wait_until(check: Callable[[], Any], timeout: float = 120.0, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def test_a_person_subscribes_reads_alerts_gives_feedback_and_searches(
    broker: EmbeddedBroker,
    stack_env: dict[str, str],
    start_worker: Callable[..., WorkerProcess],
    sample_records: list[dict[str, Any]],
    browser: Any,
    shots: Path,
) -> None:
    from selenium.webdriver.common.by import By

    # 48 papers first: enough recent papers (2 x MIN_SAMPLE) for the model to calibrate, so
    # the later papers' alerts carry a relevance a person can read.
    first, later = sample_records[:48], sample_records[48:56]
    worker = start_worker(stack_env)
    topic = stack_env["ASTRO_TOPIC_PAPERS"]
    produce(broker.bootstrap, topic, [paper_bytes(r) for r in first])
    worker.wait_for(lambda s: s["papers"] == len(first))
    mine = first[:2]
    b = browser

    # Home: an empty list and the form; create from two papers and a query.
    b.get(worker.base + "/")
    assert "Your subscriptions" in b.title
    b.find_element(By.ID, "f-name").send_keys("Star clusters")
    b.find_element(By.ID, "f-arxiv").send_keys(f"{mine[0]['arxiv_id']}\n{mine[1]['arxiv_id']}")
    b.find_element(By.ID, "f-queries").send_keys("star clusters and their stellar populations")
    threshold = b.find_element(By.ID, "f-threshold")
    threshold.clear()
    threshold.send_keys("0")  # every new paper alerts: the test needs alerts, not a ranking
    screenshot(b, shots, "1-home-form")
    follow(b, b.find_element(By.CSS_SELECTOR, "form.sub-form button[type=submit]"))

    # Created: the key is shown once, the seed papers with their titles.
    assert b.find_element(By.TAG_NAME, "h1").text == "Subscription created"
    secret = b.find_element(By.ID, "secret").get_attribute("value")
    assert secret and secret.startswith("ast_")
    body = b.find_element(By.TAG_NAME, "main").text
    assert mine[0]["title"] in body and mine[1]["title"] in body
    cookie = b.get_cookie("astro_owner")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    screenshot(b, shots, "2-created")
    follow(b, b.find_element(By.LINK_TEXT, "Open its alerts"))
    alerts_url = b.current_url
    assert "No alerts yet" in b.page_source

    # More papers arrive: the alerts page lists them, with evidence.
    produce(broker.bootstrap, topic, [paper_bytes(r) for r in later])

    def listed() -> list[Any]:
        b.get(alerts_url)
        items = b.find_elements(By.CSS_SELECTOR, "li.alert")
        return items if len(items) == len(later) else []

    items = wait_until(listed)
    titles = {r["title"] for r in later}
    for item in items:
        assert item.find_element(By.TAG_NAME, "h2").text in titles
        assert item.find_elements(By.CSS_SELECTOR, ".evidence li"), item.text
        strength = item.find_element(By.CSS_SELECTOR, ".strength").text
        assert re.match(r"(Very strong|Strong|Medium|Weak) match", strength), strength
        assert (
            item.find_element(By.PARTIAL_LINK_TEXT, "PDF")
            .get_attribute("href")
            .startswith("https://arxiv.org/pdf/")
        )
    screenshot(b, shots, "3-alerts")

    # Not relevant: the paper leaves the list (and can be shown again).
    gone = items[0].find_element(By.TAG_NAME, "h2").text
    follow(b, items[0].find_element(By.CSS_SELECTOR, "button[value=not_relevant]"))
    remaining = [
        e.find_element(By.TAG_NAME, "h2").text for e in b.find_elements(By.CSS_SELECTOR, "li.alert")
    ]
    assert gone not in remaining and len(remaining) == len(later) - 1
    assert "1 paper you marked not relevant is hidden" in b.page_source
    follow(b, b.find_element(By.CSS_SELECTOR, "li.alert button[value=read]"))
    assert b.find_elements(By.CSS_SELECTOR, "li.alert.read")
    screenshot(b, shots, "4-alerts-after-feedback")

    # The feed: a private link on the alerts page.
    feed = b.find_element(By.LINK_TEXT, "Atom feed").get_attribute("href")
    assert "/feed.atom?token=" in feed
    with urllib.request.urlopen(feed, timeout=30) as response:
        xml = response.read().decode()
    assert response.status == 200 and "<feed" in xml, xml[:500]
    b.get(feed)
    screenshot(b, shots, "5-feed")

    # Search, then a paper page with its sentences and similar papers.
    b.get(worker.base + "/app/search")
    b.find_element(By.ID, "s-q").send_keys("young star clusters in the Milky Way")
    follow(b, b.find_element(By.CSS_SELECTOR, "form.search button"))
    results = b.find_elements(By.CSS_SELECTOR, "li.alert h3 a")
    assert results, b.page_source[:2000]
    screenshot(b, shots, "6-search")
    follow(b, results[0])
    assert b.find_elements(By.CSS_SELECTOR, "ol.sentences li")
    assert "Similar papers" in b.page_source
    screenshot(b, shots, "7-paper")

    b.get(worker.base + "/app/status")
    main = b.find_element(By.TAG_NAME, "main").text
    assert (
        f"Papers indexed\n{len(first) + len(later)}" in main.replace(" ", "\n")
        or str(len(first) + len(later)) in main
    )
    screenshot(b, shots, "8-status")

    b.get(worker.base + "/")
    assert "Star clusters" in b.find_element(By.CSS_SELECTOR, "ul.subs").text
    screenshot(b, shots, "9-home")
    if os.environ.get("ASTRO_SCREENSHOTS_COPY"):  # refresh the README's screenshots
        docs = Path(os.environ["ASTRO_SCREENSHOTS_COPY"])
        readme_copy(shots / "3-alerts.png", docs / "alerts.png")
        readme_copy(shots / "9-home.png", docs / "home.png")


def readme_copy(source: Path, target: Path, height: int = 1450) -> None:
    """The top of a page (the first alerts), in 256 colours: small enough for the README."""
    from PIL import Image

    with Image.open(source) as image:
        top = image.crop((0, 0, image.width, min(image.height, height)))
        top.convert("RGB").quantize(colors=256).save(target, optimize=True)

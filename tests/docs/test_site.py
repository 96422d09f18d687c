"""The documentation site: it builds with ``mkdocs build --strict`` into one page per entry of
its navigation, and in headless Chromium its navigation, search and API reference work."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import BROWSER, DRIVER, NO_BROWSER, headless_chromium

pytest.importorskip("mkdocs", reason="needs the docs extra: pip install -e '.[docs]'")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def nav_pages(entries) -> list[str]:
    """Every page that mkdocs.yml's ``nav`` lists, in order."""
    pages = []
    for entry in entries:
        (value,) = entry.values() if isinstance(entry, dict) else (entry,)
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return out


def test_every_page_of_the_navigation_is_built(site):
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    pages = nav_pages(config["nav"])
    assert len(pages) >= 15 and "reference/ood.md" in pages and "ood.md" in pages
    for page in pages:
        html = site / ("index.html" if page == "index.md" else page[:-3] + "/index.html")
        assert html.is_file(), page
    assert (site / "search" / "search_index.json").is_file()


@pytest.fixture(scope="module")
def served(site):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not (BROWSER and DRIVER):
        pytest.skip(NO_BROWSER)
    pytest.importorskip("selenium.webdriver", reason="needs selenium (glowflow[test])")
    with headless_chromium() as driver:
        yield driver


def wait(driver, condition, seconds: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(condition)


def test_the_navigation_leads_from_the_home_page_to_a_task_page(browser, served):
    from selenium.webdriver.common.by import By

    browser.get(served + "/")
    assert "glowflow" in browser.title
    link = wait(browser, lambda d: next((a for a in d.find_elements(By.CSS_SELECTOR, "nav a")
                                         if a.text.strip() == "Out-of-distribution detection"
                                         and a.is_displayed()), None))  # fmt: skip
    link.click()
    heading = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "article h1"))
    assert heading.text.strip().startswith("Out-of-distribution detection")
    assert browser.current_url.rstrip("/").endswith("/ood")
    # the page's figures load: the histograms of the OOD sets
    images = browser.find_elements(By.CSS_SELECTOR, "article img")
    assert images and all(
        browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images
    )


def test_search_finds_the_page_that_explains_a_method(browser, served):
    from selenium.webdriver.common.by import By

    browser.get(served + "/")
    # at this width the header shows the search box itself
    box = wait(browser, lambda d: next((e for e in d.find_elements(
        By.CSS_SELECTOR, "input.md-search__input") if e.is_displayed()), None))  # fmt: skip
    box.click()
    box.send_keys("density of states")
    results = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                      ".md-search-result__item a"))  # fmt: skip
    targets = [a.get_attribute("href") for a in results]
    assert any("/ood/" in t for t in targets), targets


def test_the_api_reference_renders_the_docstrings_of_public_names(browser, served):
    from selenium.webdriver.common.by import By

    browser.get(served + "/reference/ood/")
    heading = wait(browser, lambda d: d.find_element(By.ID, "glowflow.ood.DensityOfStates"))
    assert "DensityOfStates" in heading.text
    article = browser.find_element(By.CSS_SELECTOR, "article").text
    assert "kernel density estimate" in article and "bandwidth" in article
    assert browser.find_elements(By.ID, "glowflow.ood.detect")
    # private helpers stay out of the reference
    assert not browser.find_elements(By.ID, "glowflow.ood.detection._method_scores")

"""The explorer end to end in headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium): load the page, upload a face, move an attribute slider and the
temperature slider, and see the picture and the URL change."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BROWSER, DRIVER, NO_BROWSER, face_photo, headless_chromium

pytest.importorskip("selenium.webdriver", reason="needs selenium (glowflow[test])")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (BROWSER and DRIVER), reason=NO_BROWSER)]


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


def loaded(driver, css: str, other_than: str | None = None):
    """Wait until the image ``css`` shows a loaded picture whose src is not ``other_than``."""

    def ready(d):
        img = d.find_element(By.CSS_SELECTOR, css)
        src = img.get_attribute("src") or ""
        done = d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        return src if src and src != other_than and done else False

    return WebDriverWait(driver, 30).until(ready)


def test_upload_a_face_then_move_an_attribute_and_the_temperature(browser, live_server, tmp_path):
    browser.get(live_server + "/")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery [data-id]")
    )
    shown = loaded(browser, "#edit-source")  # the first gallery face
    photo = tmp_path / "face.jpg"
    photo.write_bytes(face_photo())
    browser.find_element(By.ID, "upload").send_keys(str(photo))
    source = loaded(browser, "#edit-source", other_than=shown)
    assert "/api/images/" in source and "/api/images/g" not in source  # the upload, not g0
    framing = browser.find_element(By.ID, "framing").text
    assert "face detector" in framing
    before_src = loaded(browser, "#edit-result")
    before_url = browser.current_url

    slider = browser.find_element(By.CSS_SELECTOR, '#attributes [data-attribute="Smiling"]')
    browser.execute_script("arguments[0].scrollIntoView()", slider)
    slider.click()
    for _ in range(6):
        slider.send_keys(Keys.ARROW_RIGHT)
    after_src = loaded(browser, "#edit-result", other_than=before_src)
    WebDriverWait(browser, 30).until(lambda d: "Smiling=" in d.current_url)
    assert "Smiling=" in after_src and browser.current_url != before_url
    WebDriverWait(browser, 30).until(
        lambda d: "bits/dim" in d.find_element(By.CSS_SELECTOR, "#view-edit .bpd").text
    )

    browser.find_element(By.ID, "tab-sample").click()
    first = loaded(browser, "#sample-image")
    url = browser.current_url
    assert "view=sample" in url
    temperature = browser.find_element(By.ID, "temperature")
    temperature.click()
    for _ in range(4):
        temperature.send_keys(Keys.ARROW_LEFT)
    second = loaded(browser, "#sample-image", other_than=first)
    WebDriverWait(browser, 30).until(lambda d: d.current_url != url)
    assert "temperature=" in second and "temperature=" in browser.current_url
    status = browser.find_element(By.ID, "status").text
    assert "error" not in status.lower(), status

    # the state is in the URL: reloading it brings back the same picture
    browser.get(browser.current_url)
    assert loaded(browser, "#sample-image") == second


def test_a_shared_link_to_an_upload_the_server_lost_asks_for_the_file(browser, live_server):
    browser.get(live_server + "/?view=edit&image=0123456789abcdef&Smiling=1")
    WebDriverWait(browser, 30).until(
        lambda d: "upload the file again" in d.find_element(By.TAG_NAME, "body").text.lower()
    )


def test_the_download_link_points_at_the_picture_shown(browser, live_server):
    browser.get(live_server + "/?view=edit&image=g2&Young=-1")
    src = loaded(browser, "#edit-result")
    href = browser.find_element(By.ID, "download").get_attribute("href")
    assert Path(href).name == Path(src).name

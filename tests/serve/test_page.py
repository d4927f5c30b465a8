"""The live page in a real browser: Debian's headless Chromium driven by selenium loads /, submits a prompt, waits
for the streamed text and checks the colored token spans and both charts. The screenshot goes to
$SPECDECODE_SCREENSHOT (default: the test's temporary folder)."""

import os
import shutil

import pytest

selenium = pytest.importorskip("selenium")
pytest.importorskip("uvicorn")
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_server import start  # noqa: E402

from specdecode.models import Builder  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,1000",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()


def test_the_page_streams_colored_tokens_and_draws_charts(browser, tmp_path):
    uv, thread, url, _ = start(Builder("tiny-llama"), "prompt-lookup", max_batch=4)
    try:
        browser.get(url + "/")
        assert "Speculative decoding" in browser.title or "specdecode" in browser.title
        box = browser.find_element(By.ID, "prompt")
        box.clear()
        box.send_keys("abc abc abc abc abc abc")
        browser.find_element(By.ID, "max_tokens").clear()
        browser.find_element(By.ID, "max_tokens").send_keys("40")
        browser.find_element(By.ID, "go").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "out").get_attribute("data-done") == "1")
        spans = browser.find_elements(By.CSS_SELECTOR, "#out span.tok")
        kinds = {c for s in spans for c in s.get_attribute("class").split() if c != "tok"}
        assert spans and kinds & {"accepted", "bonus", "recovered"}, kinds
        assert "target calls" in browser.find_element(By.ID, "stats").text
        for chart in ("pos", "tpc"):  # a drawn canvas differs from an empty one
            drawn = browser.execute_script(
                f"const c = document.getElementById('{chart}'); const e = document.createElement('canvas');"
                f"e.width = c.width; e.height = c.height; return c.toDataURL() !== e.toDataURL();"
            )
            assert drawn, chart
        shot = os.environ.get("SPECDECODE_SCREENSHOT") or str(tmp_path / "page.png")
        browser.save_screenshot(shot)
        assert os.path.getsize(shot) > 10_000
    finally:
        uv.should_exit = True
        thread.join(timeout=10)

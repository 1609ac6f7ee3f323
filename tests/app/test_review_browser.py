"""The A/B report and the blind review page in headless Chromium (Debian's chromium + chromium-driver, selenium):
the report renders with its images and no console errors; a reviewer clicks through the review page, downloads
the choices, and importing them un-blinds the win rate and writes DPO pairs."""

import json
import shutil
import time

import pytest

from app.evaluation.ab import run_ab
from app.evaluation.review import import_choices, write_review_page
from tests.app.test_ab import eval_config  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are "
                                "not installed (make test installs them)")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.fixture
def run_dir(eval_config, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    run_ab(eval_config, out, progress=False)
    return out


def test_report_renders_with_images_and_no_console_errors(browser, run_dir):
    browser.get((run_dir / "report.html").as_uri())
    assert "A/B report" in browser.find_element("tag name", "h1").text
    images = browser.find_elements("tag name", "img")
    assert len(images) >= 2
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", im)
               for im in images)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_review_page_click_through_and_import(browser, run_dir, tmp_path):
    page = tmp_path / "review.html"
    info = write_review_page(run_dir, page, a="base", b="base+rag")
    html = page.read_text()
    assert "base+rag" not in html  # blind: no variant names in the page
    browser.get(page.as_uri())
    pairs = browser.find_elements("css selector", ".pair")
    assert len(pairs) == info["pairs"] >= 2
    for k, p in enumerate(pairs):
        p.find_element("css selector", "button[data-c='left']" if k % 2 == 0 else "button[data-c='tie']").click()
    pairs[0].find_element("tag name", "textarea").send_keys("clearer")
    assert f"{len(pairs)} of {len(pairs)} judged" in browser.find_element("id", "count").text
    browser.find_element("id", "download").click()
    target = tmp_path / "downloads" / "choices.json"
    for _ in range(100):
        if target.is_file() and target.stat().st_size:
            break
        time.sleep(0.1)
    got = json.loads(target.read_text())
    assert len(got["choices"]) == len(pairs) and got["choices"][0]["note"] == "clearer"
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    report = import_choices(target, tmp_path / "prefs")
    key = json.loads((run_dir / "review_key.json").read_text())["pairs"]
    lefts = [key[c["id"]]["left"] for c in got["choices"] if c["choice"] == "left"]
    expected_a_wins = sum(v == "base" for v in lefts) + 0.5 * sum(c["choice"] == "tie" for c in got["choices"])
    assert report["win_rate_base"] == pytest.approx(expected_a_wins / len(pairs), abs=1e-4)
    assert report["ties"] == sum(c["choice"] == "tie" for c in got["choices"])
    rows = [json.loads(x) for f in (tmp_path / "prefs").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(rows) == len(lefts) and all({"prompt", "chosen", "rejected"} <= set(r) for r in rows)
    assert all(r["prompt"] for r in rows)

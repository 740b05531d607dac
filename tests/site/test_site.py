"""A real-browser check of the built site: headless Chromium opens pages from a local server and
looks for what a reader would notice: console errors, requests leaving the machine, unrendered math,
broken figures, open solutions and a broken search. Run after `make book`."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail("_build/html/index.html is missing: run `make book` first")
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output readable
            pass

    handler = functools.partial(QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail("Chromium or chromedriver missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def visit(browser, url: str) -> None:
    browser.get_log("performance")  # drop entries of earlier pages
    browser.get_log("browser")
    browser.get(url)
    browser.execute_script("return document.readyState")


def requested_urls(browser) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def assert_stays_local(browser, server: str) -> None:
    leaving = [u for u in requested_urls(browser) if not u.startswith((server, "data:", "blob:", "about:"))]
    assert not leaving, f"the page requested addresses off this machine: {leaving[:5]}"


def chapter_pages() -> list[Path]:
    return sorted((HTML / "lessons").glob("[0-9][0-9]_*.html"))


def test_index_opens_cleanly(server, browser):
    visit(browser, f"{server}/index.html")
    assert "Multimodal AI" in browser.title
    assert_stays_local(browser, server)
    assert console_errors(browser) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "index.png"))


def test_every_chapter_renders_math_and_figures(server, browser):
    pages = chapter_pages()
    assert pages, "no chapter pages were built"
    for page in pages:
        check_chapter(server, browser, page)


def check_chapter(server, browser, page: Path) -> None:
    visit(browser, f"{server}/lessons/{page.name}")
    browser.implicitly_wait(0)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda b: b.find_elements("css selector", "mjx-container"))
    # Prose only (code, outputs and typeset math removed): no TeX may be left unrendered.
    unrendered = browser.execute_script("""
        const prose = document.querySelector('main').cloneNode(true);
        prose.querySelectorAll('pre, mjx-container, .cell_output, .highlight').forEach(e => e.remove());
        return prose.textContent.match(/\\$|\\\\\\(|\\\\(sum|frac|mathbb|lVert|times|cdot|tau|lambda)\\b/g);
    """)
    assert not unrendered, f"{page.name}: raw TeX delimiters left on the page: {unrendered[:3]}"
    errors = [e.text for e in browser.find_elements("css selector", "mjx-merror")]
    assert not errors, f"{page.name}: MathJax could not typeset: {errors[:3]}"
    images = browser.find_elements("css selector", "div.cell_output img, main img")
    assert images, f"{page.name} shows no figures"
    broken = [i.get_attribute("src")[:80] for i in images
              if not browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)]
    assert not broken, f"{page.name}: figures that did not load: {broken}"
    # Figures fill the text column (a paragraph's width) and are drawn at least that wide, so the
    # browser scales them down, never up into a blur (utils.plotting.MIN_WIDTH_INCHES x DPI).
    narrow = browser.execute_script("""
        const column = document.querySelector('main article p').getBoundingClientRect().width;
        return [...document.querySelectorAll('div.cell_output img')]
            .filter(i => i.getBoundingClientRect().width < column - 1 || i.naturalWidth < column - 1)
            .map(i => [Math.round(column), Math.round(i.getBoundingClientRect().width), i.naturalWidth]);
    """)
    assert not narrow, (f"{page.name}: figures narrower than the text column or drawn below its width "
                        f"(column, shown, drawn px): {narrow[:4]}")
    # At a 1280-pixel window no code cell or output may need horizontal scrolling (book.css makes
    # room for 100-character lines; `make lint` keeps notebook code within 100).
    scrolling = browser.execute_script("""
        return [...document.querySelectorAll('main div.cell_input pre, main div.cell_output pre,'
                                             + ' main div.cell_output, main div.highlight pre')]
            .filter(e => e.scrollWidth > e.clientWidth + 1)
            .map(e => (e.textContent.split('\\n').find(line => line.trim()) || '').trim().slice(0, 70));
    """)
    assert not scrolling, f"{page.name}: blocks that scroll sideways at 1280 px, first lines: {scrolling[:4]}"
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), \
        f"{page.name}: the page itself is wider than a 1280-pixel window"
    assert_stays_local(browser, server)
    assert console_errors(browser) == []
    browser.save_screenshot(str(SHOTS / page.with_suffix(".png").name))


def test_solutions_are_collapsed(server, browser):
    pages = sorted((HTML / "solutions").glob("[0-9][0-9]_*.html"))
    assert pages, "no solution pages were built"
    visit(browser, f"{server}/solutions/{pages[0].name}")
    hidden = browser.find_elements("css selector", "details.hide-input, details.above-input")
    assert hidden, "solution code cells should sit in collapsed <details> blocks (tag them hide-input)"
    assert not any(d.get_attribute("open") for d in hidden), "a solution is expanded by default"
    assert console_errors(browser) == []
    browser.save_screenshot(str(SHOTS / "solutions.png"))


def test_search_finds_a_chapter_term(server, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    visit(browser, f"{server}/search.html?q=modality")
    WebDriverWait(browser, 30).until(
        lambda b: b.find_elements("css selector", "#search-results li, ul.search li")
    )
    results = browser.find_elements("css selector", "#search-results li, ul.search li")
    assert results, "search for 'modality' found nothing"
    assert_stays_local(browser, server)
    assert console_errors(browser) == []

"""The documentation site in a real browser: served over HTTP on loopback, read in Debian's Chromium as a person would:
the navigation to the inference chapter, `predict`'s signature and parameters, and the search."""
import re, shutil, sys
from pathlib import Path
import pytest
from helpers import free_port, running
from test_docs import build_site, chapters, modidx

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
SCREENSHOT = Path(__file__).parents[1]/'docs-screenshots'/'inference.png'  # for a person to look at; not committed
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)")


def test_navigate_read_and_search_the_site(tmp_path_factory):
    from playwright.sync_api import sync_playwright, expect
    built = build_site(tmp_path_factory)
    syms = modidx(built['clone'])
    infer_page = syms['fruit360.infer.predict'][0].split('#')[0]
    data_page = syms['fruit360.data.check_dataset'][0].split('#')[0]
    titles = {name: title for name, title, _ in chapters(built['clone'])}
    h1 = lambda name: re.compile(rf'^{re.escape(titles[name])}\W*$')  # the heading's text, then its permalink sign
    port = free_port()
    url = f'http://127.0.0.1:{port}/'
    cmd = [sys.executable, '-m', 'http.server', '--bind', '127.0.0.1', '--directory', str(built['site']), str(port)]
    with running(cmd, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
            '--disable-component-update', '--disable-sync'])
        page = browser.new_page(viewport={'width': 1280, 'height': 900})
        page.goto(url)
        expect(page.locator('article h1')).to_have_text(h1('index.html'))

        # the navigation leads to the inference chapter
        nav = page.locator('nav.md-nav--primary > ul > li > a.md-nav__link')
        nav.filter(has_text=re.compile(rf'^\s*{re.escape(titles[infer_page])}\s*$')).click()
        page.wait_for_url(re.compile(re.escape(infer_page) + '$'))
        expect(page.locator('article h1')).to_have_text(h1(infer_page))

        # predict's signature, its docstring and its parameters table, all below its heading
        heading = page.locator('article h3#predict')
        expect(heading).to_be_visible()
        heading.scroll_into_view_if_needed()
        expect(heading.locator('xpath=following-sibling::div[contains(@class, "highlight")][1]')).to_contain_text('def predict(')
        table = heading.locator('xpath=following::table[1]')
        for param in ('img', 'model', 'topk'):
            expect(table.locator('tbody tr td:first-child', has_text=re.compile(rf'^{param}$'))).to_have_count(1)
        expect(table).to_contain_text('a path, bytes, file object, PIL image or HxWx3 uint8 array')
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOT)
        print(f'screenshot of the inference page: {SCREENSHOT}')

        # the search box finds check_dataset and leads to the data chapter
        page.locator('input.md-search__input').click()
        page.keyboard.type('check_dataset')
        result = page.locator('.md-search-result__item a', has_text='check_dataset').first
        expect(result).to_be_visible(timeout=30_000)
        result.click()
        page.wait_for_url(re.compile(re.escape(data_page) + r'(\?[^#]*)?(#.*)?$'))  # ?h=: the search term, highlighted
        expect(page.locator('article h1')).to_have_text(h1(data_page))
        expect(page.locator('article h3#check_dataset')).to_be_visible()
        browser.close()

"The upload-and-classify demo in a real browser: Voila serves it, headless Chromium uploads a real image."
import io, shutil
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from helpers import BIN, free_port, running
from fruit360.infer import predict

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
APP = Path(__file__).parents[1]/'apps'/'demo.ipynb'
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)")


def test_upload_in_a_real_browser(images_for_demo, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    port = free_port()
    url = f'http://127.0.0.1:{port}/'
    cmd = [str(BIN/'voila'), str(APP), '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1']
    with running(cmd, url, cwd=tmp_path), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
            '--disable-component-update', '--disable-sync'])
        page = browser.new_page()
        page.goto(url, timeout=120_000)
        upload = page.get_by_role('button', name='Photo')
        upload.wait_for(timeout=120_000)
        for image in images_for_demo:
            with page.expect_file_chooser() as chooser:  # as a person would: click the button, pick a file
                upload.click()
            chooser.value.set_files(str(image))
            page.wait_for_function(f'document.querySelector(".fruit360-class") && document.body.innerText.includes({predict(image)["class"]!r})', timeout=60_000)
            assert page.inner_text('.fruit360-class') == predict(image)['class']
            expect(page.locator('.fruit360-top5 tr')).to_have_count(5, timeout=30_000)  # the chart is a widget of its own: it may show a moment after the class
        noise = tmp_path/'noise.png'  # a picture of no fruit at all
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(noise)
        with page.expect_file_chooser() as chooser:
            upload.click()
        chooser.value.set_files(str(noise))
        expected = predict(noise)
        shown = f"(closest: {expected['class']}, novelty {expected['novelty']:.2f})"  # this upload's answer, not the one before
        page.wait_for_function(f'document.body.innerText.includes({shown!r})', timeout=60_000)  # a fixture image may be unknown too
        assert page.inner_text('.fruit360-unknown') == 'not one of the 75 fruits I know'
        assert page.inner_text('.fruit360-class') == expected['class']
        assert f"not one of the 75 fruits I know {shown}" in page.inner_text('body')
        browser.close()


@pytest.fixture
def images_for_demo(data_path):
    "Two real images of different classes (or fixture images without the real data)."
    classes = sorted((data_path/'Test').iterdir())
    return [sorted(classes[0].iterdir())[0], sorted(classes[-1].iterdir())[0]]

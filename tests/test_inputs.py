"Hostile inputs to `predict` and to the training data: only raster formats are decoded, only regular files are read."
import io, os, shutil, socket, struct, tempfile, threading, time, warnings
from pathlib import Path
import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageDraw
from fruit360 import images
from fruit360.infer import get_model, predict, predict_batch

EPS = b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n'


def fruit(fmt='JPEG') -> bytes:
    "A red round 'fruit' on white, as an image file of format `fmt`."
    img = Image.new('RGB', (120, 90), 'white')
    ImageDraw.Draw(img).ellipse([30, 15, 90, 75], fill=(200, 30, 30))
    buf = io.BytesIO(); img.save(buf, fmt); return buf.getvalue()


def psd() -> bytes:
    "A 1x1 RGB Photoshop file, written by hand (Pillow reads PSD but cannot write it)."
    header = b'8BPS' + struct.pack('>H6xHIIHH', 1, 3, 1, 1, 8, 3)
    return header + struct.pack('>III', 0, 0, 0) + struct.pack('>H', 0) + bytes([200, 30, 30])


@pytest.fixture
def fake_gs(tmp_path, monkeypatch):
    "A `gs` first on PATH that leaves a marker file when anything runs it; yields the marker's path."
    bin_, marker = tmp_path/'bin', tmp_path/'gs-ran'
    bin_.mkdir()
    (bin_/'gs').write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    (bin_/'gs').chmod(0o755)
    monkeypatch.setenv('PATH', f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, 'gs_binary', None)  # make Pillow look for gs again, on the new PATH
    return marker


def test_eps_is_refused_by_name_and_ghostscript_never_runs(tmp_path, fake_gs):
    (tmp_path/'x.eps').write_bytes(EPS)
    assert Image.open(io.BytesIO(EPS)).format == 'EPS'  # Pillow itself would take it, and hand it to gs on load
    for src, name in [(tmp_path/'x.eps', f"'{tmp_path/'x.eps'}'"), (EPS, f'<{len(EPS)} bytes>'),
                      (Image.open(io.BytesIO(EPS)), '<PIL image')]:
        with pytest.raises(ValueError, match='EPS format: fruit360 reads only JPEG, PNG, WebP, BMP, GIF and TIFF') as e:
            predict(src)
        assert name in str(e.value)
    with pytest.raises(ValueError, match="'upload.eps' looks like an image in EPS format"): images.image_size(EPS, "'upload.eps'")
    assert not fake_gs.exists(), 'Ghostscript was started'


@pytest.mark.parametrize('fmt', ['ICO', 'PCX', 'PPM', 'SGI', 'TGA', 'DDS', 'JPEG2000', 'QOI', 'SPIDER', 'ICNS', 'AVIF', 'PSD'])
def test_other_pillow_formats_are_refused(fmt):
    data = psd() if fmt == 'PSD' else fruit(fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # a real file of that format, that Pillow can read
    with pytest.raises(ValueError) as e: predict(data)
    named = f'<{len(data)} bytes> looks like an image in {fmt} format: fruit360 reads only JPEG'
    assert named in str(e.value) or Image.OPEN[fmt][1] is None, str(e.value)  # a TGA has no signature to name it by
    assert 'fruit360 reads only JPEG' in str(e.value) or 'is not a readable image' in str(e.value), str(e.value)


def test_pdf_is_refused():
    buf = io.BytesIO(); Image.new('RGB', (8, 8), 'red').save(buf, 'PDF')
    with pytest.raises(ValueError, match='is not a readable image: fruit360 reads JPEG, PNG'): predict(buf.getvalue())


@pytest.mark.parametrize('fmt', ['JPEG', 'PNG', 'WEBP', 'BMP', 'GIF', 'TIFF'])
def test_raster_formats_are_classified(fmt):
    ans = predict(fruit(fmt), topk=2)
    assert len(ans['probabilities']) == 2 and ans['class'] == next(iter(ans['probabilities']))


def within(seconds, fn, unblock=None):
    "The result of `fn()`, or a test failure (after calling `unblock`) when it takes more than `seconds`."
    res = {}
    def run():
        try: res['value'] = fn()
        except BaseException as e: res['error'] = e
    t = threading.Thread(target=run, daemon=True); t.start(); t.join(seconds)
    if t.is_alive():
        if unblock: unblock()
        t.join(5)
        pytest.fail(f'still running after {seconds} s')
    if 'error' in res: raise res['error']
    return res['value']


def open_writer(fifo):
    "Let a reader blocked on `fifo` go on: open it for writing, then close it (end of file)."
    try: os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError: pass


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path/'photo.jpg'; os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"photo.jpg' is a pipe \(FIFO\), not an image file"):
        within(10, lambda: predict(fifo), lambda: open_writer(fifo))


def test_non_regular_and_oversized_files_are_refused_unread(tmp_path):
    short = Path(tempfile.mkdtemp(dir='/tmp'))  # a socket path must be short
    sock = socket.socket(socket.AF_UNIX); sock.bind(str(short/'s.png'))
    (tmp_path/'big.png').touch(); os.truncate(tmp_path/'big.png', 50_000_001)  # sparse: no disk used
    (tmp_path/'gone.jpg').symlink_to(tmp_path/'deleted.jpg')
    cases = {short/'s.png': "s.png' is a socket", '/dev/null': "'/dev/null' is a device",
             tmp_path/'big.png': "big.png' is larger than 50,000,000 bytes", tmp_path/'gone.jpg': "gone.jpg': no such file (a broken link)"}
    try:
        for path, msg in cases.items():
            with pytest.raises((ValueError, OSError), match=msg.replace('(', r'\(').replace(')', r'\)')): within(10, lambda: predict(path))
    finally: sock.close(); shutil.rmtree(short)


def test_a_file_object_is_read_no_further_than_the_limit():
    class Endless:
        "A file object that never ends, like an open /dev/zero."
        name = 'endless.png'
        def read(self, n=-1):
            if n is None or n < 0: raise AssertionError('asked to read an endless file to its end')
            return b'\0' * n
    with pytest.raises(ValueError, match="'endless.png' is larger than 50,000,000 bytes"): predict(Endless())


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads files whatever their permissions')
def test_an_unreadable_file_is_named(tmp_path):
    f = tmp_path/'secret.jpg'; f.write_bytes(fruit()); f.chmod(0)
    with pytest.raises(PermissionError, match="secret.jpg' cannot be read: permission denied"): predict(f)


def test_training_data_skips_a_fifo_with_a_warning(tmp_path):
    from fruit360.data import check_dataset, make_synthetic_fruits
    data = make_synthetic_fruits(tmp_path/'fruits', n_classes=2, n_per_class=4)
    fifo = data/'Training'/'Synthetic 00 Round'/'stuck.jpg'; os.mkfifo(fifo)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        s = within(60, lambda: check_dataset(data), lambda: open_writer(fifo))
    assert s.counts('Training') == {'Synthetic 00 Round': 4, 'Synthetic 01 Square': 4} and fifo not in s.bad
    assert any('stuck.jpg' in str(m.message) and 'not regular files' in str(m.message) for m in w), [str(m.message) for m in w]


def test_predict_batch_skips_bad_items_and_keeps_the_order(tmp_path):
    fifo = tmp_path/'pipe.jpg'; os.mkfifo(fifo)
    imgs = [fruit(), fifo, EPS, fruit('PNG'), tmp_path]
    res = within(30, lambda: predict_batch(imgs, topk=1, bs=2, errors='skip'), lambda: open_writer(fifo))
    answer = {'class', 'known', 'novelty', 'probabilities'}  # the shipped model's answer (open set: known, novelty)
    assert [set(r) for r in res] == [answer, {'error'}, {'error'}, answer, {'error'}]
    assert "pipe.jpg' is a pipe" in res[1]['error'] and 'EPS format' in res[2]['error'] and 'is a folder' in res[4]['error']
    assert res[0] == predict(fruit(), topk=1) and res[3] == predict(fruit('PNG'), topk=1)
    with pytest.raises(ValueError, match="pipe.jpg' is a pipe"): predict_batch(imgs)


@pytest.mark.parametrize('kw, msg', [({'topk': -1}, 'topk must be a whole number of at least 1'),
                                     ({'topk': 0}, 'topk must be'), ({'topk': 2.5}, 'topk must be'),
                                     ({'bs': -1}, 'bs must be a whole number of at least 1'), ({'bs': 0}, 'bs must be'),
                                     ({'errors': 'ignore'}, "errors must be 'raise' or 'skip'")])
def test_bad_topk_bs_and_errors_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg): predict_batch([fruit()] * 3, **kw)
    if 'topk' in kw:
        with pytest.raises(ValueError, match=msg): predict(fruit(), topk=kw['topk'])


def test_a_topk_over_the_class_count_gives_every_class():
    assert len(predict(fruit(), topk=10_000)['probabilities']) == len(get_model().classes)


def test_threads_that_ask_for_a_model_at_once_load_it_once(tmp_path, monkeypatch):
    import fruit360.infer as infer
    from fruit360.runtime import DEFAULT_MODEL, OnnxClassifier
    made = []
    class Counting(OnnxClassifier):
        def __init__(self, *a, **kw):
            made.append(1); time.sleep(0.2)  # as slow to load as a large model: every thread arrives meanwhile
            super().__init__(*a, **kw)
    monkeypatch.setattr(infer, 'OnnxClassifier', Counting)
    model = shutil.copy(DEFAULT_MODEL, tmp_path/'fresh.onnx')  # a path no earlier test has loaded
    start, answers = threading.Barrier(8), []
    def ask(): start.wait(); answers.append(predict(fruit(), model=model, topk=1))
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join(60)
    assert len(made) == 1 and len(answers) == 8 and all(a == answers[0] for a in answers)

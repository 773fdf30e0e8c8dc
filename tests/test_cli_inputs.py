"`fruit360 predict` as a user runs it on hostile paths: one line per bad file, the good files classified, no hang, no traceback."
import io, json, os, resource, shutil, socket, subprocess, sys, tempfile
from pathlib import Path
import pytest
from PIL import Image, ImageDraw
from helpers import BIN

EPS = b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n'


def limit_memory():
    "Run the child with at most 3 GB of address space: a command that reads /dev/zero to its end fails, not the machine."
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def fruit360(*args, env=None, timeout=60):
    "Run the installed `fruit360` command; a hang fails the test after `timeout` seconds."
    return subprocess.run([str(BIN/'fruit360'), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, preexec_fn=limit_memory)


@pytest.fixture
def good(tmp_path):
    "A JPEG and a PNG of a red round 'fruit' on white."
    img = Image.new('RGB', (120, 90), 'white')
    ImageDraw.Draw(img).ellipse([30, 15, 90, 75], fill=(200, 30, 30))
    img.save(tmp_path/'good.jpg'); img.save(tmp_path/'good.png')
    return tmp_path/'good.jpg', tmp_path/'good.png'


def test_predict_reports_each_bad_path_on_one_line_and_classifies_the_rest(tmp_path, good):
    bin_, marker = tmp_path/'bin', tmp_path/'gs-ran'
    bin_.mkdir(); (bin_/'gs').write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n'); (bin_/'gs').chmod(0o755)
    short = Path(tempfile.mkdtemp(dir='/tmp'))  # a socket path must be short
    sock = socket.socket(socket.AF_UNIX); sock.bind(str(short/'sock.jpg'))
    os.mkfifo(tmp_path/'fifo.jpg')
    (tmp_path/'x.eps').write_bytes(EPS)
    (tmp_path/'gone.jpg').symlink_to(tmp_path/'deleted.jpg')
    (tmp_path/'folder.jpg').mkdir()
    (tmp_path/'huge.png').touch(); os.truncate(tmp_path/'huge.png', 60_000_000)  # sparse
    bad = {tmp_path/'fifo.jpg': 'is a pipe (FIFO)', '/dev/zero': 'is a device', tmp_path/'x.eps': 'EPS format',
           tmp_path/'gone.jpg': 'no such file (a broken link)', tmp_path/'folder.jpg': 'is a folder',
           short/'sock.jpg': 'is a socket', tmp_path/'huge.png': 'is larger than 50,000,000 bytes'}
    args = [good[0], *bad, good[1]]
    try: out = fruit360('predict', *args, '--topk', '1', env={**os.environ, 'PATH': f"{bin_}{os.pathsep}{os.environ['PATH']}"})
    finally: sock.close(); shutil.rmtree(short)
    assert out.returncode == 1, out.stderr
    assert [json.loads(l)['image'] for l in out.stdout.splitlines()] == [str(good[0]), str(good[1])]
    errors = out.stderr.splitlines()
    assert 'Traceback' not in out.stderr and len(errors) == len(bad), out.stderr
    for line, (path, why) in zip(errors, bad.items()):
        assert line.startswith(f"fruit360 predict: '{path}'") and why in line, line
    assert not marker.exists(), 'Ghostscript was started'


def test_a_name_with_a_newline_still_gives_one_line(tmp_path, good):
    (tmp_path/'two\nlines.jpg').write_bytes(b'not an image')
    out = fruit360('predict', tmp_path/'two\nlines.jpg', good[0])
    assert out.returncode == 1 and len(out.stdout.splitlines()) == 1
    assert out.stderr.splitlines() == [f"fruit360 predict: '{tmp_path}/two\\nlines.jpg' is not a readable image: "
                                       "fruit360 reads JPEG, PNG, WebP, BMP, GIF and TIFF images"]


@pytest.mark.parametrize('topk', ['-1', '0'])
def test_a_topk_below_one_is_refused(good, topk):
    out = fruit360('predict', good[0], '--topk', topk)
    assert out.returncode == 1 and out.stdout == ''
    assert out.stderr.strip() == f'fruit360 predict: error: --topk must be a whole number of at least 1 (or None for all), not {topk}'


def test_an_error_without_a_message_still_says_what_happened(tmp_path, monkeypatch, capsys):
    from fruit360.cli import COMMANDS, main
    (tmp_path/'boom.py').write_text('from fastcore.script import call_parse\n'
                                    '@call_parse\ndef boom_cli():\n    "Fail the way reading /dev/zero did."\n    raise MemoryError()\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(COMMANDS, 'boom', ('boom', 'boom_cli', 'fail'))
    monkeypatch.setattr(sys, 'argv', sys.argv[:])
    assert main(['boom']) == 1
    assert capsys.readouterr().err == 'fruit360 boom: error: out of memory\n'

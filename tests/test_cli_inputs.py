"`fruit360 predict` as a user runs it on hostile paths: one line per bad file, the good files classified, no hang, no traceback."
import csv, io, json, os, resource, shutil, socket, subprocess, sys, tempfile
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


@pytest.fixture
def tree(tmp_path):
    "A folder of photos in nested subfolders, with a text file, a bad image, a folder linked back into itself and one with no images."
    root = tmp_path/'photos'
    for i, rel in enumerate(['b/2.png', 'a.jpg', 'b/c/1.JPEG', 'b/c/0.webp']):
        (root/rel).parent.mkdir(parents=True, exist_ok=True)
        img = Image.new('RGB', (100, 100), 'white')
        ImageDraw.Draw(img).ellipse([10 + 5 * i, 20, 90, 80], fill=(60 * i, 180 - 40 * i, 30))
        img.save(root/rel)
    (root/'notes.txt').write_text('not an image, not a row')
    (root/'b'/'bad.jpg').write_bytes(b'not a JPEG')
    (root/'b'/'c'/'loop').symlink_to(root, target_is_directory=True)
    (tmp_path/'empty').mkdir()
    return root


def test_predict_takes_folders_and_globs_in_sorted_order(tree):
    out = fruit360('predict', tree, tree/'b'/'**'/'*.png', tree.parent/'empty', tree/'*.gif')
    assert out.returncode == 1
    want = [tree/'a.jpg', tree/'b/2.png', tree/'b/c/0.webp', tree/'b/c/1.JPEG', tree/'b/2.png']
    assert [json.loads(l)['image'] for l in out.stdout.splitlines()] == list(map(str, want))
    assert out.stderr.splitlines() == [
        f"fruit360 predict: '{tree}/b/bad.jpg' is not a readable image: fruit360 reads JPEG, PNG, WebP, BMP, GIF and TIFF images",
        f"fruit360 predict: '{tree.parent}/empty' is a folder with no image files (.jpg .jpeg .png .webp .bmp .gif .tif .tiff) in it",
        f"fruit360 predict: '{tree}/*.gif' matches no files"]


@pytest.mark.parametrize('ext', ['.csv', '.jsonl'])
def test_predict_out_writes_a_row_per_image_as_predict_batch_answers(tree, ext):
    from fruit360.infer import predict_batch
    res = tree.parent/f'results{ext}'
    out = fruit360('predict', tree, '--topk', '2', '--out', res)
    assert out.returncode == 1 and out.stdout == '' and len(out.stderr.splitlines()) == 1
    rows = list(csv.DictReader(res.open())) if ext == '.csv' else [json.loads(l) for l in res.read_text().splitlines()]
    files = [str(tree/f) for f in ('a.jpg', 'b/2.png', 'b/bad.jpg', 'b/c/0.webp', 'b/c/1.JPEG')]
    assert [r['image'] for r in rows] == files
    for r, ans in zip(rows, predict_batch(files, topk=2, errors='skip')):
        if 'error' in ans: assert r['error'] == ans['error'] and (ext == '.jsonl' or r['class'] == r['probability'] == ''); continue
        (c1, p1), (c2, p2) = ans['probabilities'].items()
        assert (r['class'], r['top1_class'], r['top2_class']) == (ans['class'], c1, c2)
        assert float(r['probability']) == pytest.approx(p1) and float(r['top2_probability']) == pytest.approx(p2)
        assert str(r['known']) == str(ans['known']) and float(r['novelty']) == pytest.approx(ans['novelty'])
    assert [p.name for p in tree.parent.iterdir() if p.name.endswith('.part')] == []


def test_predict_out_of_another_type_is_one_line_and_writes_nothing(tree):
    out = fruit360('predict', tree, '--out', tree.parent/'results.txt')
    assert out.returncode == 1 and out.stdout == '' and not (tree.parent/'results.txt').exists()
    assert out.stderr == f"fruit360 predict: error: --out '{tree.parent}/results.txt': give a file name ending in .csv or .jsonl\n"


@pytest.mark.parametrize('ext', ['.csv', '.jsonl'])
def test_predict_out_writes_a_file_name_that_is_not_utf8(tmp_path, ext):
    "A file name that is no UTF-8 (its bytes as Python's surrogate escapes) is written as JSON writes it, \\udcff, and every row stays."
    folder = tmp_path/'photos'; folder.mkdir()
    for name in (b'ok.png', b'bad\xff.png'):
        Image.new('RGB', (100, 100), 'red').save(os.fsdecode(bytes(folder) + b'/' + name))
    res = tmp_path/f'results{ext}'
    out = fruit360('predict', folder, '--out', res)
    assert out.returncode == 0 and out.stderr == '', out.stderr
    rows = list(csv.DictReader(res.open())) if ext == '.csv' else [json.loads(l) for l in res.read_text().splitlines()]
    bad = f'{folder}/bad\\udcff.png' if ext == '.csv' else f'{folder}/bad\udcff.png'  # CSV holds the escape as text; JSON reads it back
    assert sorted(r['image'] for r in rows) == sorted([bad, f'{folder}/ok.png'])


def test_a_recursive_glob_lists_each_image_once(tree):
    "'tree/**' matches the folders and the files in them: each image is classified once (the folders walked add none twice)."
    out = fruit360('predict', tree/'**')
    images = [json.loads(l)['image'] for l in out.stdout.splitlines()]
    assert len(images) == len(set(images)) == 4, images  # a.jpg, b/2.png, b/c/0.webp, b/c/1.JPEG (b/bad.jpg is refused)

"Inference as users run it: no torch import, real photos that are not 100x100, random input, the CLI."
import io, json, subprocess, sys
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from conftest import REAL, needs_real_data
from helpers import BIN
from fruit360.infer import photo_variants, predict, predict_batch


def test_importing_inference_imports_neither_torch_nor_fastai():
    code = 'import sys, fruit360.infer, fruit360.cli; print(sorted(m for m in ("torch", "fastai", "mlflow") if m in sys.modules))'
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() == '[]'


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused_cleanly(data):
    try: ans = predict(data)
    except ValueError as e: assert 'bytes>' in str(e)  # names the input
    else: assert ans['class'] in ans['probabilities']


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from([(), (3,), (4,)]), st.integers(0, 2**32 - 1))
def test_random_arrays_of_any_size_are_classified(h, w, channels, seed):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, *channels), dtype=np.uint8)
    ans = predict(a, topk=3)
    assert len(ans['probabilities']) == 3 and ans['class'] == next(iter(ans['probabilities']))
    assert 0 < sum(predict(a)['probabilities'].values()) < 1.0001


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([np.float32, np.int16, np.bool_]), st.integers(1, 50))
def test_arrays_of_other_types_are_refused(dtype, n):
    with pytest.raises(ValueError, match='expected an HxWx3 uint8 array'):
        predict(np.zeros((n, n, 3), dtype))


@needs_real_data
def test_real_photos_that_are_not_100x100():
    "Accuracy on real Test images made into photos: upscaled, padded, cropped, sideways with EXIF."
    files = [sorted((REAL/'Test'/c).iterdir())[i] for c in sorted(p.name for p in (REAL/'Test').iterdir()) for i in (0, 20)]
    truth = [f.parent.name for f in files]
    variants = [photo_variants(f) for f in files]
    accuracy = {}
    for name in variants[0]:
        preds = [a['class'] for a in predict_batch([v[name] for v in variants])]
        accuracy[name] = float(np.mean([p == t for p, t in zip(preds, truth)]))
    accuracy['original'] = float(np.mean([a['class'] == t for a, t in zip(predict_batch(files), truth)]))
    print(json.dumps(accuracy, indent=1))
    assert accuracy['upscaled x4'] >= accuracy['original'] - 0.02
    assert accuracy['sideways + EXIF'] >= accuracy['original'] - 0.02
    assert min(accuracy.values()) >= 0.8, accuracy


def test_cli_classifies_good_files_and_reports_bad_ones(tmp_path, fixture_data):
    good = sorted((fixture_data/'Test').rglob('*.jpg'))[:2]
    (tmp_path/'empty.jpg').write_bytes(b'')
    out = subprocess.run([str(BIN/'fruit360'), 'predict', str(good[0]), str(tmp_path/'empty.jpg'), str(tmp_path/'nope.png'),
                          str(good[1])], capture_output=True, text=True)
    assert out.returncode == 1
    assert [json.loads(l)['image'] for l in out.stdout.splitlines()] == [str(good[0]), str(good[1])]
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 2 and 'Traceback' not in out.stderr
    assert "empty.jpg' is empty" in errors[0] and "nope.png': no such file" in errors[1]
    ok = subprocess.run([str(BIN/'fruit360'), 'predict', str(good[0])], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)['class'] == predict(good[0])['class']
    line = json.loads(ok.stdout)
    assert list(line) == ['image', 'class', 'known', 'novelty', 'probabilities']  # whether it is a fruit the model knows
    assert isinstance(line['known'], bool) and line['novelty'] == pytest.approx(predict(good[0])['novelty'], abs=1e-6)
    top = subprocess.run([str(BIN/'fruit360'), 'predict', str(good[0]), str(good[1]), '--topk', '2'], capture_output=True, text=True)
    assert top.returncode == 0 and [len(json.loads(l)['probabilities']) for l in top.stdout.splitlines()] == [2, 2]


def test_cli_refuses_a_model_whose_classes_do_not_fit(tmp_path):
    import onnx
    from fruit360.runtime import DEFAULT_MODEL
    m = onnx.load(DEFAULT_MODEL)
    for p in m.metadata_props:
        if p.key == 'classes': p.value = json.dumps(['Apple'])
    onnx.save(m, tmp_path/'bad.onnx')
    out = subprocess.run([str(BIN/'fruit360'), 'predict', 'x.jpg', '--model', str(tmp_path/'bad.onnx')], capture_output=True, text=True)
    assert out.returncode == 1 and 'lists 1 classes but outputs 75 probabilities' in out.stderr and 'Traceback' not in out.stderr

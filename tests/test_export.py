"The shipped model: one ONNX file that matches the committed PyTorch checkpoint over the whole Test split."
import json
from pathlib import Path
import numpy as np
import pytest
from conftest import REAL, needs_real_data
from fruit360.data import check_dataset, split_items
from fruit360.export import DEFAULT_MODEL, OnnxClassifier, check_parity, export_onnx
from fruit360.infer import predict_batch

ROOT = Path(__file__).parents[1]
CHECKPOINT = ROOT/'models_artifacts'/'custom_cnn.pth'
RESULTS = json.loads((ROOT/'models_artifacts'/'custom_cnn_results.json').read_text())


def test_the_shipped_model_describes_itself():
    clf = OnnxClassifier()
    meta = clf.metadata
    assert clf.classes == RESULTS['classes'] and len(clf.classes) == 75
    assert meta['input_size'] == '100' and json.loads(meta['normalisation'])['mean'] == [0.485, 0.456, 0.406]
    assert 'CC BY-SA 4.0' in meta['dataset_license'] and meta['training_date'] and meta['dataset_version']
    assert DEFAULT_MODEL.stat().st_size < 5_000_000
    card = (DEFAULT_MODEL.parent/'MODEL_CARD.md').read_text()
    assert f"accuracy {RESULTS['test']['accuracy']:.4f}" in card and 'CC BY-SA 4.0' in card


@needs_real_data
def test_onnx_matches_pytorch_on_the_whole_test_split():
    test = split_items(check_dataset(REAL), 'Test')
    parity = check_parity(CHECKPOINT, DEFAULT_MODEL, test)
    assert parity['n_images'] == 6_068
    assert parity['max_abs_diff'] < 1e-4 and parity['differing_predictions'] == 0, parity


@needs_real_data
def test_the_shipped_model_scores_what_training_measured():
    summary = check_dataset(REAL)
    test = split_items(summary, 'Test')
    truth = [f.parent.name for f in test]
    preds = [a['class'] for a in predict_batch(test, bs=256)]
    assert np.mean([p == t for p, t in zip(preds, truth)]) == pytest.approx(RESULTS['test']['accuracy'], abs=2e-3)


def test_export_has_a_dynamic_batch_axis(tmp_path):
    out = export_onnx(CHECKPOINT, tmp_path/'m.onnx', dataset_version='test')
    clf = OnnxClassifier(out)
    for n in (1, 3, 17):
        assert clf.probabilities(np.full((n, 100, 100, 3), 255, np.uint8)).shape == (n, 75)
    assert clf.metadata['dataset_version'] == 'test'


def test_export_command_checks_parity_before_anything_ships(tmp_path, fixture_data, monkeypatch):
    import subprocess
    from helpers import BIN
    from fruit360.custom_cnn import train
    monkeypatch.setenv('MLFLOW_TRACKING_URI', f'sqlite:///{tmp_path}/mlflow.db')
    train('custom_cnn', epochs=1, bs=16, data=fixture_data, out=tmp_path, plots=tmp_path/'plots')
    out = subprocess.run([str(BIN/'fruit360'), 'export', '--checkpoint', str(tmp_path/'custom_cnn.pth'), '--data', str(fixture_data),
                          '--out', str(tmp_path/'m.onnx')], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    n_test = len(list((fixture_data/'Test').rglob('*.jpg')))
    assert f'parity on {n_test} Test images' in out.stdout and ', 0 differing predictions' in out.stdout
    assert OnnxClassifier(tmp_path/'m.onnx').classes == sorted(p.name for p in (fixture_data/'Training').iterdir())

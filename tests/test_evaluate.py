"""`fruit360 evaluate` run as a user runs it: on a checkpoint of `fruit360 train` (its figures agree with the run's), with
--out and --mlflow, on classes the model does not know, and on the shipped model."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from PIL import Image
from helpers import BIN
from conftest import REAL, needs_real_data

FRUIT360 = str(BIN/'fruit360')


def fruit360(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    "Run the installed `fruit360` command with `args`."
    return subprocess.run([FRUIT360, *map(str, args)], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope='module')
def trained(fixture_data, tmp_path_factory):
    "A quick `fruit360 train` run on the generated fixture (one epoch), tracked in a throwaway SQLite store: its folder and store URI."
    tmp = tmp_path_factory.mktemp('evaluate')
    store = {'MLFLOW_TRACKING_URI': f'sqlite:///{tmp}/mlflow.db'}
    out = fruit360('train', '--data', fixture_data, '--epochs', 1, '--bs', 16, '--out', tmp/'out', '--plots', tmp/'plots',
                   '--experiment', 'quick', env=store)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp, store


@pytest.fixture(scope='module')
def evaluated(trained, fixture_data):
    "`fruit360 evaluate` of the run's checkpoint on the fixture, with --out and --mlflow: the process and the output folder."
    tmp, store = trained
    out = fruit360('evaluate', '--model', tmp/'out'/'custom_cnn.pth', '--data', fixture_data, '--bs', 16,
                   '--out', tmp/'report', '--mlflow', '--experiment', 'evaluations', env=store)
    assert out.returncode == 0, out.stderr[-3000:]
    return out, tmp/'report'


def test_evaluate_agrees_with_train(trained, evaluated):
    results = json.loads((trained[0]/'out'/'custom_cnn_results.json').read_text())
    report = json.loads((evaluated[1]/'evaluation.json').read_text())
    assert report['n_images'] == results['n_test'] and report['precision'] == results['precision']
    for k in ('accuracy', 'f1_macro'): assert report['metrics'][k] == pytest.approx(results['test'][k], abs=1e-6)
    assert f"top-1 accuracy {results['test']['accuracy']:.4f}" in evaluated[0].stdout


def test_out_holds_the_json_and_valid_pngs(evaluated):
    report = json.loads((evaluated[1]/'evaluation.json').read_text())
    assert set(report) >= {'model', 'data', 'n_images', 'metrics', 'per_class', 'confusion', 'confusion_normalized', 'top_losses', 'ignored_classes'}
    assert set(report['metrics']) >= {'accuracy', 'top5_accuracy', 'f1_macro'}
    assert sum(c['support'] for c in report['per_class'].values()) == report['n_images'] == sum(map(sum, report['confusion']))
    assert all(sum(row) == pytest.approx(1, abs=1e-5) for row in report['confusion_normalized'])
    assert len(report['top_losses']) == 12 and {'image', 'true', 'predicted', 'probability'} <= set(report['top_losses'][0])
    for png in ('confusion.png', 'top_losses.png'):
        with Image.open(evaluated[1]/png) as im: im.verify(); assert im.format == 'PNG'
    assert sorted(os.listdir(evaluated[1])) == ['confusion.png', 'evaluation.json', 'top_losses.png']  # no temporary folder left


def test_mlflow_run_has_the_metrics_and_files(trained, evaluated):
    import mlflow
    tmp, store = trained
    report = json.loads((evaluated[1]/'evaluation.json').read_text())
    client = mlflow.MlflowClient(store['MLFLOW_TRACKING_URI'])
    runs = client.search_runs([client.get_experiment_by_name('evaluations').experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id in evaluated[0].stdout
    assert {k: runs[0].data.metrics[k] for k in report['metrics']} == report['metrics']
    assert sorted(a.path for a in client.list_artifacts(runs[0].info.run_id)) == ['confusion.png', 'evaluation.json', 'top_losses.png']


def test_shipped_model_agrees_with_predict_and_refuses_unknown_classes(fixture_data, tmp_path):
    "The shipped ONNX model (the default) on a folder of class folders: classes it does not know are one error, or with "
    "--ignore-unknown-classes left out; on the others its accuracy is that of `fruit360 predict`'s answers."
    from fruit360.infer import get_model
    data = tmp_path/'photos'
    for c, src in zip(get_model().classes[:3], sorted((fixture_data/'Test').iterdir())): shutil.copytree(src, data/c)
    unknown = 'Synthetic 03 Round'
    shutil.copytree(fixture_data/'Test'/unknown, data/unknown)
    out = fruit360('evaluate', '--data', data)
    assert out.returncode == 1 and out.stdout == ''
    assert out.stderr.strip().splitlines() == [f"fruit360 evaluate: error: the model does not know 1 of the 4 classes in '{data}': {unknown}; "
                                              "evaluate a model trained on them, or pass --ignore-unknown-classes to evaluate the others"]
    out = fruit360('evaluate', '--data', data, '--ignore-unknown-classes', '--out', tmp_path/'report')
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path/'report'/'evaluation.json').read_text())
    assert report['ignored_classes'] == {unknown: 6} and f'left out, unknown to the model: {unknown} (6 images)' in out.stdout
    pred = fruit360('predict', *[data/c for c in get_model().classes[:3]], '--topk', 1)
    answers = [json.loads(line) for line in pred.stdout.splitlines()]
    right = [a['class'] == Path(a['image']).parent.name for a in answers]
    assert report['model_type'] == 'onnx' and report['n_images'] == len(answers) == 18
    assert report['metrics']['accuracy'] == pytest.approx(sum(right) / len(right), abs=1e-9)
    assert report['metrics']['known'] == pytest.approx(sum(a['known'] for a in answers) / len(answers), abs=1e-9)


def test_bad_input_is_one_line(tmp_path, fixture_data):
    (tmp_path/'model.onnx').write_bytes(b'not a model')
    for args, says in [(['--data', tmp_path/'missing'], "data folder '"), (['--model', tmp_path/'model.onnx', '--data', fixture_data], 'model.onnx'),
                       (['--model', tmp_path/'model.pkl', '--data', fixture_data], 'give an exported model (.onnx) or a checkpoint'),
                       (['--data', fixture_data], 'does not know any of the classes')]:
        out = fruit360('evaluate', *args)
        assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and says in out.stderr, (args, out.stderr)


@needs_real_data
def test_shipped_model_is_right_on_every_distinguishable_test_image(tmp_path):
    "Issue 16's clean target, as a user measures it: `fruit360 evaluate` of the shipped model on all of Test, twins as one class."
    out = fruit360('evaluate', '--data', REAL, '--out', tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path/'evaluation.json').read_text())
    assert report['n_images'] == sum(1 for f in (REAL/'Test').rglob('*') if f.is_file()), report['n_images']
    worst = [(t['image'], t['true'], t['predicted']) for t in report['top_losses'][:3]]
    assert report['metrics']['accuracy_twins_merged'] == 1.0, (report['metrics'], worst)

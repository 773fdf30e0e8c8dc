"The shipped model: one ONNX file that matches the committed PyTorch checkpoint over the whole Test split; bad files get one line."
import importlib.util, json, os, subprocess
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conftest import REAL, needs_real_data
from helpers import BIN
from fruit360.data import check_dataset, split_items
from fruit360.export import check_parity, export_onnx, model_card
from fruit360.runtime import DEFAULT_MODEL, OnnxClassifier
from fruit360.infer import predict_batch

ROOT = Path(__file__).parents[1]
CHECKPOINT = ROOT/'models_artifacts'/'custom_cnn.pth'
RESULTS = json.loads((ROOT/'models_artifacts'/'custom_cnn_results.json').read_text())
_spec = importlib.util.spec_from_file_location('bench_openset', ROOT/'bench'/'openset.py')
openset = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(openset)  # the generated non-fruit images of the open-set bench


def test_the_shipped_model_describes_itself():
    clf = OnnxClassifier()
    meta = clf.metadata
    assert clf.classes == RESULTS['classes'] and len(clf.classes) == 75
    assert meta['input_size'] == '100' and json.loads(meta['normalisation'])['mean'] == [0.485, 0.456, 0.406]
    assert 'CC BY-SA 4.0' in meta['dataset_license'] and meta['training_date'] and meta['dataset_version']
    assert DEFAULT_MODEL.stat().st_size < 8_000_000  # it ships in the wheel: weights 2.3 MB, open-set bank 3.8 MB
    card = (DEFAULT_MODEL.parent/'MODEL_CARD.md').read_text()
    assert f"accuracy {RESULTS['test']['accuracy']:.4f}" in card and 'CC BY-SA 4.0' in card
    rule = json.loads(meta['openset'])
    assert rule['rule'] == 'known = novelty <= threshold' and rule['k'] == 10 and rule['calibration']['kept'] >= 0.98
    assert f"threshold {rule['threshold']:.4f}" in card and 'can be flagged' in card


def test_the_shipped_model_flags_generated_non_fruit_images():
    "Noise, gradients, rendered text, shapes and drawn scenes: at least 95% of them are flagged not known (bench/openset.py: 99.6% of 1,800)."
    pictures = [np.asarray(im) for ims in openset.non_fruit(10, seed=1, sets=('noise_uniform', 'noise_gaussian', 'gradient', 'text',
                                                                           'shapes_colour', 'scene')).values() for im in ims]
    answers = predict_batch(pictures)
    known = [round(a['novelty'], 3) for a in answers if a['known']]
    assert len(known) <= 0.05 * len(pictures), known


@needs_real_data
def test_onnx_matches_pytorch_on_the_whole_test_split():
    test = split_items(check_dataset(REAL), 'Test')
    parity = check_parity(CHECKPOINT, DEFAULT_MODEL, test)
    assert parity['n_images'] == 6_068
    assert parity['max_abs_diff'] < 1e-4 and parity['differing_predictions'] == 0, parity
    assert parity['max_abs_diff_features'] < 1e-3 and parity['max_abs_diff_novelty'] < 1e-4 and parity['differing_known'] == 0, parity


@needs_real_data
def test_the_shipped_model_scores_what_training_measured():
    summary = check_dataset(REAL)
    test = split_items(summary, 'Test')
    truth = [f.parent.name for f in test]
    answers = predict_batch(test, bs=256)
    preds = [a['class'] for a in answers]
    assert np.mean([p == t for p, t in zip(preds, truth)]) == pytest.approx(RESULTS['test']['accuracy'], abs=2e-3)
    # Known fruit stays known: the threshold keeps 98% of the validation images, and Test, 6,068 other images, gets
    # that within its sampling error (one standard deviation is 0.0018 at 98%): 3 of them below is a real change.
    assert np.mean([a['known'] for a in answers]) >= 0.98 - 3 * np.sqrt(0.98 * 0.02 / len(test))


def test_export_has_a_dynamic_batch_axis(tmp_path):
    out = export_onnx(CHECKPOINT, tmp_path/'m.onnx', dataset_version='test')
    clf = OnnxClassifier(out)
    for n in (1, 3, 17):
        assert clf.probabilities(np.full((n, 100, 100, 3), 255, np.uint8)).shape == (n, 75)
    assert clf.metadata['dataset_version'] == 'test'


def clean_env(tmp_path) -> dict:
    "The environment of a `fruit360` command with an empty $TMPDIR and its own cache; PyTorch's and ONNX Runtime's own settings unset."
    (tmp_path/'tmpdir').mkdir()
    drop = ('TORCHINDUCTOR_CACHE_DIR', 'ORT_DISABLE_TELEMETRY')
    return {**{k: v for k, v in os.environ.items() if k not in drop}, 'TMPDIR': str(tmp_path/'tmpdir'), 'FRUIT360_CACHE': str(tmp_path/'cache')}


def test_train_then_export_commands_check_parity_record_the_split_and_leave_no_temporary_files(tmp_path, fixture_data):
    env = {**clean_env(tmp_path), 'MLFLOW_TRACKING_URI': f'sqlite:///{tmp_path}/mlflow.db'}
    train = subprocess.run([str(BIN/'fruit360'), 'train', '--epochs', '1', '--bs', '16', '--data', str(fixture_data), '--out', str(tmp_path),
                            '--plots', str(tmp_path/'plots')], capture_output=True, text=True, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    assert '| custom_cnn | Test |' in train.stdout  # `train` prints its results table
    assert sorted(os.listdir(env['TMPDIR'])) == []  # no torchinductor_<user>: importing torchvision made it in $TMPDIR
    res = json.loads((tmp_path/'custom_cnn_results.json').read_text())
    assert (res['valid_pct'], res['seed']) == (0.15, 42)
    out = subprocess.run([str(BIN/'fruit360'), 'export', '--checkpoint', str(tmp_path/'custom_cnn.pth'), '--data', str(fixture_data),
                          '--out', str(tmp_path/'m.onnx')], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    n_test = len(list((fixture_data/'Test').rglob('*.jpg')))
    assert f'parity on {n_test} Test images' in out.stdout and ', 0 differing predictions' in out.stdout
    assert ', 0 differing known decisions' in out.stdout
    clf = OnnxClassifier(tmp_path/'m.onnx')
    assert clf.classes == sorted(p.name for p in (fixture_data/'Training').iterdir())
    assert json.loads(clf.metadata['test_metrics'])['test'] == res['test']  # the metadata of the run that wrote the checkpoint
    assert '- **Validation** (15% of Training, seed 42):' in model_card(tmp_path/'m.onnx')  # the split from the metadata
    img = next((fixture_data/'Test').rglob('*.jpg'))
    pred = subprocess.run([str(BIN/'fruit360'), 'predict', '--model', str(tmp_path/'m.onnx'), str(img)], capture_output=True, text=True, env=env)
    assert pred.returncode == 0, pred.stderr
    assert list(json.loads(pred.stdout)) == ['image', 'class', 'known', 'novelty', 'probabilities']
    assert '15% of Training, fastai RandomSplitter seed 42' in OnnxClassifier(tmp_path/'m.onnx').openset['calibration']['split']
    assert sorted(os.listdir(env['TMPDIR'])) == []  # no torchinductor_<user>, no ONNX Runtime .ses left behind


def run_all(cmds: list[list]) -> list[subprocess.CompletedProcess]:
    "Run the commands `cmds` side by side; their completed processes, in order."
    procs = [subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in cmds]
    outs = [p.communicate() for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(procs, outs)]


def assert_one_line_error(out: subprocess.CompletedProcess, path: Path) -> str:
    "The one line of `out`'s stderr, once it is checked to be an error that names `path`, without a traceback."
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1 and f"'{path}'" in lines[0] and 'Traceback' not in out.stderr, (out.args, out.stderr)
    return lines[0]


def test_a_bad_checkpoint_is_one_line_before_the_data_is_read(tmp_path):
    import torch
    ckpt, data = torch.load(CHECKPOINT, weights_only=True), CHECKPOINT.read_bytes()
    bad, marker = tmp_path/'bad', tmp_path/'ran'
    bad.mkdir()
    for name, content in {'truncated': data[:len(data) // 2], 'empty': b'', 'random': np.random.default_rng(0).bytes(10_000)}.items():
        (bad/f'{name}.pth').write_bytes(content)
    torch.save({k: v for k, v in ckpt.items() if k != 'state_dict'}, bad/'keyless.pth')
    torch.save({**ckpt, 'classes': ckpt['classes'][:-1]}, bad/'classes.pth')
    torch.save({**ckpt, 'spec': {'arch': 'os:system', 'kwargs': {'command': f'touch {marker}'}}}, bad/'system.pth')
    (bad/'interrupted.pth').write_bytes(data)  # a finished run's checkpoint beside the results of a later, interrupted run
    (bad/'interrupted_results.json').write_text(json.dumps({**RESULTS, 'mlflow_run_id': 'another-run'}))
    files = sorted(bad.glob('*.pth'))
    outs = run_all([[BIN/'fruit360', 'export', '--checkpoint', f, '--data', tmp_path/'no-data', '--out', tmp_path/'m.onnx'] for f in files])
    for f, out in zip(files, outs):
        line = assert_one_line_error(out, f)
        assert line.startswith(f"fruit360 export: error: checkpoint '{f}'") and 'no-data' not in line, line
    assert 'interrupted_results.json' in outs[files.index(bad/'interrupted.pth')].stderr
    assert not marker.exists() and not (tmp_path/'m.onnx').exists()


def test_export_never_writes_over_its_checkpoint(tmp_path):
    "An --out that is not an .onnx file, or is the checkpoint (by name, by a link, or a checkpoint named .onnx), is refused before anything is written."
    data = CHECKPOINT.read_bytes()
    for name in ('victim.pth', 'victim.onnx'):
        (tmp_path/name).write_bytes(data)
    (tmp_path/'link.onnx').symlink_to(tmp_path/'victim.pth')
    cases = [('victim.pth', 'victim.pth', 'does not end in .onnx'), ('victim.pth', 'victim.txt', 'does not end in .onnx'),
             ('victim.pth', 'link.onnx', 'is the checkpoint'), ('victim.onnx', None, 'is the checkpoint')]
    outs = run_all([[BIN/'fruit360', 'export', '--checkpoint', tmp_path/c, '--data', tmp_path/'no-data', *(['--out', tmp_path/o] if o else [])]
                    for c, o, _ in cases])
    for (c, o, says), out in zip(cases, outs):
        line = assert_one_line_error(out, tmp_path/(o or c))
        assert says in line and 'no-data' not in line, line
    assert all((tmp_path/n).read_bytes() == data for n in ('victim.pth', 'victim.onnx')) and not (tmp_path/'victim.txt').exists()


def test_a_bad_model_file_is_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    img = tmp_path/'white.png'
    Image.new('RGB', (100, 100), 'white').save(img)
    classes = OnnxClassifier().classes

    def with_metadata(name, **changes):
        m = onnx.load(DEFAULT_MODEL)
        for p in m.metadata_props:
            if p.key in changes: p.value = changes[p.key]
        onnx.save(m, tmp_path/name)
        return tmp_path/name

    def foreign(name, input='images', dtype=TensorProto.UINT8, shape=('N', 100, 100, 3)):
        x, y = helper.make_tensor_value_info(input, dtype, shape), helper.make_tensor_value_info('y', dtype, shape)
        m = helper.make_model(helper.make_graph([helper.make_node('Identity', [input], ['y'])], 'foreign', [x], [y]),
                              opset_imports=[helper.make_opsetid('', 21)], ir_version=10)
        m.metadata_props.add(key='classes', value=json.dumps(classes))
        onnx.save(m, tmp_path/name)
        return tmp_path/name

    (tmp_path/'truncated.onnx').write_bytes(DEFAULT_MODEL.read_bytes()[:100_000])
    (tmp_path/'empty.onnx').write_bytes(b'')
    files = [with_metadata('classes_dict.onnx', classes='{"Apple 10": 0}'), with_metadata('classes_number.onnx', classes='75'),
             with_metadata('classes_not_json.onnx', classes='[Apple 10'),
             *[with_metadata(f'size_{n}.onnx', input_size=n) for n in ('0', '50', '60000')],
             foreign('input_name.onnx', input='x'), foreign('input_dtype.onnx', dtype=TensorProto.FLOAT),
             foreign('input_shape.onnx', shape=('N', 3, 100, 100)), foreign('outputs.onnx'),
             foreign('matching_outputs.onnx', input='x', dtype=TensorProto.FLOAT, shape=('N', len(classes))),
             tmp_path/'truncated.onnx', tmp_path/'empty.onnx']
    outs = run_all([[BIN/'fruit360', 'predict', '--model', f, img] for f in files])
    for f, out in zip(files, outs):
        assert assert_one_line_error(out, f).startswith(f"fruit360 predict: error: model file '{f}'")

"`fruit360 package --out DIR` writes an MLflow model without ever deleting a folder that fruit360 did not make."
import subprocess
from helpers import BIN
from fruit360.serve import is_fruit360_model, save_mlflow_model


def package(out, cwd):
    return subprocess.run([str(BIN/'fruit360'), 'package', '--out', str(out), '--log', 'false'], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_package_refuses_a_folder_of_user_files_and_leaves_it_intact(tmp_path):
    (tmp_path/'models_artifacts').mkdir()
    keep = {tmp_path/'models_artifacts'/'custom_cnn.pth': b'checkpoint', tmp_path/'models_artifacts'/'results.json': b'{}',
            tmp_path/'notes.txt': b'mine'}
    for p, data in keep.items(): p.write_bytes(data)
    for out in ('models_artifacts', '.'):
        r = package(out, tmp_path)
        assert r.returncode == 1 and r.stderr.count('\n') == 1, r.stderr
        assert 'is not an MLflow model saved by fruit360' in r.stderr and 'Traceback' not in r.stderr
    assert {p: p.read_bytes() for p in keep} == keep
    assert sorted(p.name for p in tmp_path.iterdir()) == ['models_artifacts', 'notes.txt']


def test_package_creates_an_absent_folder_and_replaces_a_fruit360_model(tmp_path):
    out = tmp_path/'a'/'mlflow_model'
    r = package(out, tmp_path)
    assert r.returncode == 0, r.stderr
    assert is_fruit360_model(out)
    (out/'stale.txt').write_text('from the old model')
    assert save_mlflow_model(path=out) == out
    assert is_fruit360_model(out) and not (out/'stale.txt').exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ['mlflow_model']  # no temporary folder left beside it


def test_a_folder_that_only_looks_like_a_model_is_refused(tmp_path):
    other = tmp_path/'other_model'
    other.mkdir()
    (other/'MLmodel').write_text('flavors:\n  python_function:\n    loader_module: someone_else\n')
    try: save_mlflow_model(path=other)
    except FileExistsError as e: assert str(other) in str(e)
    else: raise AssertionError('an MLflow model of another loader was replaced')
    assert [p.name for p in other.iterdir()] == ['MLmodel']


def test_the_model_carries_its_code_and_pinned_requirements_not_a_fruit360_package(tmp_path):
    out = tmp_path/'mlflow_model'
    assert package(out, tmp_path).returncode == 0
    reqs = (out/'requirements.txt').read_text().split()
    assert all('==' in r for r in reqs) and not [r for r in reqs if r.split('==')[0] in ('fruit360', 'torch', 'fastai', 'mlflow')]
    assert 'onnxruntime' in {r.split('==')[0] for r in reqs}
    assert {p.name for p in (out/'code'/'fruit360').iterdir()} == {'__init__.py', 'images.py', 'runtime.py', 'serve.py'}

"""The MLflow model is self-contained: a new virtual environment that has only the model's requirements.txt installed (no
fruit360, no torch, no fastai) loads it and answers as `predict` does, and `mlflow models serve --env-manager uv` serves it."""
import base64, io, json, os, signal, subprocess, sys, urllib.request
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from helpers import BIN, free_port, wait_until_up
from fruit360.infer import predict
from fruit360.serve import request_body, save_mlflow_model

PYTHON = '.'.join(map(str, sys.version_info[:3]))  # the version MLflow records in the model's python_env.yaml


def outside_env(tmp: Path) -> dict:
    "This process's environment without the project's .venv (no VIRTUAL_ENV, PYTHONPATH, PYTHONHOME; its bin/ off PATH), with only `uv` added."
    tools = tmp/'tools'
    if not tools.exists():
        tools.mkdir()
        (tools/'uv').symlink_to(BIN/'uv')
    path = [p for p in os.environ.get('PATH', '').split(os.pathsep) if p and Path(p).resolve() != BIN.resolve()]
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME', 'CONDA_PREFIX', 'MLFLOW_TRACKING_URI')}
    return {**env, 'PATH': os.pathsep.join([str(tools), *path])}


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    "The shipped model saved as fruit360's MLflow model."
    return save_mlflow_model(path=tmp_path_factory.mktemp('model')/'mlflow_model')


@pytest.fixture(scope='module')
def images(data_path):
    "One Test image of each of up to 8 classes (real ones when FRUIT360_DATA is set) and a picture of noise."
    classes = sorted(p for p in (data_path/'Test').iterdir())[:8]
    noise = io.BytesIO(); Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(noise, 'PNG')
    return [sorted(c.iterdir())[0].read_bytes() for c in classes] + [noise.getvalue()]


@pytest.fixture(scope='module')
def fresh_python(model, tmp_path_factory):
    "The Python of a new virtual environment (under the test's tmp dir) with the model's requirements.txt installed and nothing else."
    tmp = tmp_path_factory.mktemp('fresh')
    env = outside_env(tmp)
    for cmd in (['uv', 'venv', '-q', '--python', PYTHON, str(tmp/'venv')],
                ['uv', 'pip', 'install', '-q', '--python', str(tmp/'venv'/'bin'/'python'), '-r', str(model/'requirements.txt')]):
        r = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    return tmp/'venv'/'bin'/'python'


def absent(python: Path, env: dict, cwd: Path) -> list[str]:
    "Which of fruit360, torch and fastai the interpreter `python` cannot import."
    probe = 'import importlib.util as u; print(" ".join(m for m in ("fruit360", "torch", "fastai") if u.find_spec(m) is None))'
    return subprocess.run([str(python), '-c', probe], env=env, cwd=cwd, capture_output=True, text=True, timeout=60).stdout.split()


def assert_same_answers(got: list[dict], images: list[bytes], topk=None):
    want = [predict(i, topk=topk) for i in images]
    assert [g['class'] for g in got] == [w['class'] for w in want]
    assert [g['known'] for g in got] == [w['known'] for w in want]
    for g, w in zip(got, want):
        assert list(g['probabilities']) == list(w['probabilities'])
        assert max(abs(g['probabilities'][k] - w['probabilities'][k]) for k in w['probabilities']) < 1e-5
        assert abs(g['novelty'] - w['novelty']) < 1e-5


LOAD_AND_PREDICT = '''
import base64, json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
images = json.load(open(sys.argv[2]))
answers = model.predict(pd.DataFrame({"image": images}), params={"topk": 5})
import fruit360
print(json.dumps({"fruit360": fruit360.__file__, "answers": answers}))
'''


def test_the_model_loads_where_only_its_requirements_are_installed(model, fresh_python, images, tmp_path):
    env = outside_env(tmp_path)
    assert absent(fresh_python, env, tmp_path) == ['fruit360', 'torch', 'fastai']
    (tmp_path/'images.json').write_text(json.dumps([base64.b64encode(i).decode() for i in images]))
    r = subprocess.run([str(fresh_python), '-c', LOAD_AND_PREDICT, str(model), str(tmp_path/'images.json')],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(out['fruit360']).is_relative_to(model/'code')  # the model's own copy of the code
    assert_same_answers(out['answers'], images, topk=5)


def test_mlflow_models_serve_builds_its_environment_from_the_model_alone(model, images, tmp_path):
    port, env = free_port(), {**outside_env(tmp_path), 'MLFLOW_ENV_ROOT': str(tmp_path/'envs')}
    url = f'http://127.0.0.1:{port}'
    log = open(tmp_path/'serve.log', 'w')
    proc = subprocess.Popen([str(BIN/'mlflow'), 'models', 'serve', '-m', str(model), '--env-manager', 'uv', '--host', '127.0.0.1',
                             '--port', str(port)], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try: wait_until_up(f'{url}/ping', proc, timeout=600)
        except (RuntimeError, TimeoutError) as e: raise AssertionError(f'{e}\n{(tmp_path/"serve.log").read_text()[-5000:]}') from None
        req = urllib.request.Request(f'{url}/invocations', request_body(images, topk=3), {'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=60) as r: assert_same_answers(json.loads(r.read())['predictions'], images, topk=3)
        req = urllib.request.Request(f'{url}/invocations', request_body([b'not an image']), {'Content-Type': 'application/json'})
        with pytest.raises(urllib.error.HTTPError) as refused: urllib.request.urlopen(req, timeout=60)
        assert refused.value.code == 400 and 'is not a readable image' in refused.value.read().decode()
    finally:
        try: os.killpg(proc.pid, signal.SIGTERM); proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired): os.killpg(proc.pid, signal.SIGKILL); proc.wait()
        log.close()
    [built] = (tmp_path/'envs').glob('mlflow-*')  # the environment MLflow made for the model, and served it from
    assert absent(built/'bin'/'python', outside_env(tmp_path), tmp_path) == ['fruit360', 'torch', 'fastai']

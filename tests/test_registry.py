"""A model registry with a champion, on a real `mlflow server`: `fruit360 package --register` adds versions and moves the
alias `champion` only to one that scores at least as well; `fruit360 predict` and `fruit360 serve` take models:/NAME@champion."""
import json, os, socket, subprocess, sys
from pathlib import Path
import onnx, pytest
from mlflow import MlflowClient
from helpers import BIN, free_port, running
from fruit360.infer import predict
from fruit360.runtime import DEFAULT_MODEL, OnnxClassifier
from fruit360.serve import CHAMPION, RANKED_BY, predict_url

NAME = 'fruit360-ci'
SHIPPED = json.loads(OnnxClassifier().metadata['test_metrics'])['test'][RANKED_BY]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    "A real MLflow tracking server with a SQLite store on a free loopback port."
    tmp, port = tmp_path_factory.mktemp('mlflow'), free_port()
    cmd = [str(BIN/'mlflow'), 'server', '--host', '127.0.0.1', '--port', str(port), '--workers', '1',
           '--backend-store-uri', f'sqlite:///{tmp}/server.db', '--artifacts-destination', str(tmp/'artifacts')]
    jobs_off = {**os.environ, 'MLFLOW_SERVER_ENABLE_JOB_EXECUTION': 'false'}  # its GenAI job runner (6 processes) is not what is tested
    with running(cmd, f'http://127.0.0.1:{port}/health', cwd=tmp, env=jobs_off):
        yield f'http://127.0.0.1:{port}'


@pytest.fixture(scope='module')
def env(server, tmp_path_factory):
    "The environment of the fruit360 commands: the tracking server, and a cache of their own."
    return {**os.environ, 'MLFLOW_TRACKING_URI': server, 'FRUIT360_CACHE': str(tmp_path_factory.mktemp('cache'))}


def variant(tmp: Path, prefix: str, score: float) -> Path:
    "The shipped model with its classes renamed `prefix` + name (so its answers tell which version gave them) and Test score `score`."
    m = onnx.load(DEFAULT_MODEL)
    for p in m.metadata_props:
        if p.key == 'classes': p.value = json.dumps([prefix + c for c in json.loads(p.value)])
        if p.key == 'test_metrics': p.value = json.dumps({'test': {**json.loads(p.value)['test'], RANKED_BY: score}})
    onnx.save(m, tmp/f'{prefix.strip()}.onnx')
    return tmp/f'{prefix.strip()}.onnx'


def fruit360(*args, env, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN/'fruit360'), *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def register(model, env, tmp) -> str:
    "Package `model` with `--register NAME`; what it printed about the registration."
    r = fruit360('package', '--model', model, '--out', tmp/'out'/Path(model).stem, '--results', tmp/'none.json', '--register', NAME,
                 env=env, cwd=tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


PACKAGE = """import sys
from pathlib import Path
from fruit360.serve import package_cli
for model in sys.argv[2:]: package_cli.__wrapped__(model, out=f'out/{Path(model).stem}', results='none.json', register=sys.argv[1])
"""

def register_more(models: list, env, tmp) -> list[str]:
    "`register` for each of `models` in turn, in one process: what `fruit360 package` runs, without paying for its start each time."
    r = subprocess.run([sys.executable, '-c', PACKAGE, NAME, *map(str, models)], env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return [l for l in r.stdout.splitlines() if l.startswith('registered')]


def predicted(image, model, env, cwd) -> dict:
    r = fruit360('predict', image, '--model', model, env=env, cwd=cwd, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope='module')
def image(data_path):
    return sorted(sorted((data_path/'Test').iterdir())[0].iterdir())[0]


def test_the_champion_moves_only_to_a_version_that_scores_at_least_as_well(server, env, image, tmp_path):
    client, champion = MlflowClient(server), f'models:/{NAME}@{CHAMPION}'
    said = register(DEFAULT_MODEL, env, tmp_path)
    assert f'registered {NAME} version 1' in said and 'it is the champion now (the first)' in said
    tags = client.get_model_version(NAME, '1').tags
    assert float(tags[f'test_{RANKED_BY}']) == pytest.approx(SHIPPED) and {'test_accuracy', 'test_f1_macro'} <= set(tags)

    assert predicted(image, champion, env, tmp_path)['class'] == predict(image)['class']

    lower, equal = register_more([variant(tmp_path, 'Lower ', SHIPPED - 0.1), variant(tmp_path, 'Equal ', SHIPPED)], env, tmp_path)
    assert f'registered {NAME} version 2' in lower and 'champion stays version 1' in lower
    assert f'registered {NAME} version 3' in equal and 'it is the champion now (was version 1' in equal  # as good: the newer one serves
    assert client.get_model_version_by_alias(NAME, CHAMPION).version == '3'
    ans = predicted(image, champion, env, tmp_path)
    assert ans['class'] == 'Equal ' + predict(image)['class']
    assert abs(ans['probabilities'][ans['class']] - predict(image)['probabilities'][predict(image)['class']]) < 1e-6
    assert predicted(image, f'models:/{NAME}/2', env, tmp_path)['class'] == 'Lower ' + predict(image)['class']
    assert len(list((Path(env['FRUIT360_CACHE'])/'registry').iterdir())) == 3  # versions 1, 3 and 2, each downloaded once

    port = free_port()
    with running([str(BIN/'fruit360'), 'serve', '--model', champion, '--port', str(port)], f'http://127.0.0.1:{port}/ping', env=env, cwd=tmp_path):
        served = predict_url(f'http://127.0.0.1:{port}', [image], topk=3)[0]
    assert served['class'] == ans['class'] and list(served['probabilities'])[0] == ans['class']


def test_what_the_registry_gives_is_checked_and_errors_are_one_line(server, env, image, tmp_path):
    other = ("import mlflow; from fruit360.runtime import DEFAULT_MODEL\n"
             "with mlflow.start_run(): info = mlflow.pyfunc.log_model(name='m', loader_module='someone_else', data_path=str(DEFAULT_MODEL), pip_requirements=[])\n"
             "mlflow.register_model(info.model_uri, 'not-fruit360')")
    r = subprocess.run([sys.executable, '-c', other], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    with socket.socket() as held:  # bound, never listening: connections are refused, and no other process can take the port
        held.bind(('127.0.0.1', 0))
        dead = {**env, 'MLFLOW_TRACKING_URI': f'http://127.0.0.1:{held.getsockname()[1]}'}
        for model, e, says in [('models:/not-fruit360/1', env, 'is not an MLflow model saved by fruit360'),
                               (f'models:/{NAME}-missing@{CHAMPION}', env, 'not found'),
                               ('models:/fruit360', env, 'write models:/NAME@ALIAS'),
                               (f'models:/{NAME}@{CHAMPION}', dead, 'does not answer')]:
            r = fruit360('predict', image, '--model', model, env=e, cwd=tmp_path, timeout=120)
            assert r.returncode == 1 and r.stdout == '' and r.stderr.count('\n') == 1 and says in r.stderr, (model, r.stderr)
    r = fruit360('package', '--register', NAME, '--log', 'false', '--out', tmp_path/'m', env=env, cwd=tmp_path)
    assert r.returncode == 1 and '--register needs the model logged' in r.stderr and not (tmp_path/'m').exists()

"Training end to end on the generated fixture: a real MLflow server, bad data, out-of-memory handling."
import os, warnings
import pytest, torch
from mlflow import MlflowClient
from helpers import BIN, free_port, running
from fruit360.data import make_synthetic_fruits
from fruit360.loaders import get_dls
from fruit360.checkpoint import model_spec
from fruit360.train import train, train_model


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    cmd = [str(BIN/'mlflow'), 'server', '--host', '127.0.0.1', '--port', str(port), '--workers', '1',
           '--backend-store-uri', f'sqlite:///{tmp_path}/server.db', '--artifacts-destination', str(tmp_path/'artifacts')]
    url = f'http://127.0.0.1:{port}'
    with running(cmd, f'{url}/health', cwd=tmp_path):
        yield url


def test_a_run_lands_in_a_real_mlflow_server(mlflow_server, fixture_data, tmp_path, monkeypatch):
    monkeypatch.setenv('MLFLOW_TRACKING_URI', mlflow_server)
    res = train('custom_cnn', epochs=2, bs=16, data=fixture_data, out=tmp_path/'out', plots=tmp_path/'plots', experiment='ci')
    client = MlflowClient(mlflow_server)
    run = client.get_run(res['mlflow_run_id'])
    assert run.info.status == 'FINISHED'
    assert run.data.params['model'] == 'custom_cnn' and run.data.params['epochs'] == '2'
    assert run.data.metrics['test_accuracy'] == pytest.approx(res['test']['accuracy'])
    assert [m.step for m in client.get_metric_history(run.info.run_id, 'f1_macro')] == [1, 2]
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {'custom_cnn.pth', 'custom_cnn_curves.png', 'custom_cnn_confusion.png', 'custom_cnn_results.json'} <= logged
    assert client.search_logged_models([run.info.experiment_id])  # the model itself


def test_unreachable_tracking_server_is_reported_before_training(fixture_data, tmp_path, monkeypatch):
    monkeypatch.setenv('MLFLOW_TRACKING_URI', f'http://127.0.0.1:{free_port()}')
    with pytest.raises(ConnectionError, match='does not answer'):
        train('custom_cnn', epochs=1, data=fixture_data, out=tmp_path/'out')
    assert not (tmp_path/'out').exists()


def test_training_goes_on_past_a_corrupt_image_and_a_one_image_class(tmp_path, monkeypatch):
    data = make_synthetic_fruits(tmp_path/'data', n_classes=3, n_per_class=16)
    (data/'Training'/'Synthetic 00 Round'/'9_100.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    (data/'Training'/'Lone 1').mkdir()
    (data/'Training'/'Lone 1'/'0_100.jpg').write_bytes((data/'Training'/'Synthetic 01 Square'/'0_100.jpg').read_bytes())
    monkeypatch.setenv('MLFLOW_TRACKING_URI', f'sqlite:///{tmp_path}/mlflow.db')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        res = train('custom_cnn', epochs=1, bs=8, data=data, out=tmp_path/'out', plots=tmp_path/'plots')
    messages = ' '.join(str(w.message) for w in caught)
    assert 'skipping 1 unreadable image' in messages and '9_100.jpg' in messages
    assert 'Lone 1 (' in messages
    assert 'Lone 1' in res['classes'] and (tmp_path/'out'/'custom_cnn.pth').exists()


def test_running_out_of_gpu_memory_suggests_a_smaller_batch(fixture_data, tmp_path, monkeypatch):
    class Greedy(torch.nn.Module):
        def __init__(self, n_classes):
            super().__init__()
            self.fc = torch.nn.Linear(1, n_classes)
        def forward(self, x): raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')
    monkeypatch.setenv('MLFLOW_TRACKING_URI', f'sqlite:///{tmp_path}/mlflow.db')
    dls = get_dls(fixture_data, bs=32)
    with pytest.raises(MemoryError, match='at batch size 32: try a smaller batch, e.g. --bs 16'):
        train_model('greedy', model_spec('custom_cnn', n_classes=4), dls, epochs=1, out=tmp_path, plots=tmp_path, model=Greedy(4))


def test_missing_data_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv('MLFLOW_TRACKING_URI', f'sqlite:///{tmp_path}/mlflow.db')
    with pytest.raises(FileNotFoundError, match="'/no/such/fruits' does not exist"):
        train('custom_cnn', data='/no/such/fruits', out=tmp_path)
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        train('vgg', out=tmp_path)

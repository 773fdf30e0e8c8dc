"Training that survives interruption: a real `fruit360 train` killed with SIGKILL and resumed ends as the same run left alone."
import json, os, signal, subprocess, time
import torch
from mlflow import MlflowClient
from helpers import BIN
from fruit360.training import RESUME_FILE, read_resume_state

EPOCHS = 4


def train_cmd(data, out, *options) -> list[str]:
    return [str(BIN/'fruit360'), 'train', '--epochs', str(EPOCHS), '--bs', '16', '--data', str(data), '--out', str(out),
            '--plots', str(out.parent/'plots'), '--experiment', 'resume', *options]


def store(folder) -> dict:
    "The environment of a `fruit360 train` that tracks its runs in an SQLite store in `folder`."
    return {**os.environ, 'MLFLOW_TRACKING_URI': f'sqlite:///{folder}/mlflow.db'}


def run(cmd, env) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def state_epoch(out) -> tuple[int, object]:
    "The epoch of the resume state of the one run in progress in `out` (0 while there is none) and its folder."
    for folder in out.glob('.custom_cnn.*'):
        if (folder/RESUME_FILE).is_file(): return read_resume_state(folder)['epoch'], folder
    return 0, None


def test_a_run_killed_after_epoch_2_and_resumed_is_the_run_left_alone(fixture_data, tmp_path):
    whole, cut = tmp_path/'whole', tmp_path/'cut'
    whole.mkdir(); cut.mkdir()
    t0 = time.perf_counter()
    done = run(train_cmd(fixture_data, whole/'out'), store(whole))
    assert done.returncode == 0, done.stderr[-3000:]

    log = open(cut/'log.txt', 'w')
    proc = subprocess.Popen(train_cmd(fixture_data, cut/'out'), env=store(cut), stdout=log, stderr=subprocess.STDOUT)
    try:
        while (seen := state_epoch(cut/'out'))[0] < 2:
            assert proc.poll() is None, (cut/'log.txt').read_text()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # no cleanup, no MLflow end_run: as a lost machine
    finally:
        proc.kill(); proc.wait(); log.close()
    epoch, folder = state_epoch(cut/'out')
    assert (seen[0], epoch) == (2, 2)
    assert not (cut/'out'/'custom_cnn.pth').exists() and not (cut/'out'/'custom_cnn_results.json').exists()

    other = run(train_cmd(fixture_data, cut/'out', '--resume', '--lr', '0.01'), store(cut))  # the run's settings are recorded
    assert other.returncode == 1 and other.stderr.count('\n') == 1, other.stderr
    assert 'cannot resume' in other.stderr and 'lr: 0.003, now 0.01' in other.stderr
    assert state_epoch(cut/'out') == (2, folder)  # and nothing of it was touched

    resumed = run(train_cmd(fixture_data, cut/'out', '--resume'), store(cut))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    print(f'whole run, killed run and resume: {time.perf_counter() - t0:.0f} s')

    a, b = (torch.load(d/'out'/'custom_cnn.pth', weights_only=True) for d in (whole, cut))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k in a['state_dict']: assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k  # bit for bit, on the same CPU
    ra, rb = (json.loads((d/'out'/'custom_cnn_results.json').read_text()) for d in (whole, cut))
    assert rb['resumed_after_epoch'] == 2 and ra['resumed_after_epoch'] is None
    for k in ('history', 'valid', 'test', 'best_epoch', 'epochs', 'classes'): assert ra[k] == rb[k], k
    assert sorted(os.listdir(cut/'out')) == ['custom_cnn.pth', 'custom_cnn_results.json']  # the run's folder is gone

    client = MlflowClient(f'sqlite:///{cut}/mlflow.db')
    runs = client.search_runs([client.get_experiment_by_name('resume').experiment_id])
    assert [r.info.run_id for r in runs] == [rb['mlflow_run_id']] == [folder.name.rsplit('.', 1)[1]] == [b['mlflow_run_id']]
    assert runs[0].info.status == 'FINISHED'
    assert [m.step for m in client.get_metric_history(rb['mlflow_run_id'], 'f1_macro')] == [1, 2, 3, 4]


def test_resume_with_nothing_to_resume_says_so_in_one_line(tmp_path):
    r = run([str(BIN/'fruit360'), 'train', '--resume', '--out', str(tmp_path/'out')], store(tmp_path))
    assert r.returncode == 1
    assert r.stderr == f"fruit360 train: error: nothing to resume: no interrupted custom_cnn run in '{tmp_path/'out'}' (train without --resume to start one)\n"


def test_refit_settings_are_checked_before_anything_is_read_or_trained(tmp_path):
    "A refit setting without `--refit-head`, or one the refit cannot use, is refused in one line before the data is read (here there is none)."
    cmd = [str(BIN/'fruit360'), 'train', '--data', str(tmp_path/'no data'), '--out', str(tmp_path/'out')]
    alone = run([*cmd, '--refit-wd', '1e-3'], store(tmp_path))
    assert alone.returncode == 1 and alone.stderr == ('fruit360 train: error: refit settings (wd) without the refit: '
                                                      'pass --refit-head (refit_head=True) too, or leave them out\n'), alone.stderr
    bad = run([*cmd, '--refit-head', '--refit-studio-share', '1'], store(tmp_path))
    assert bad.returncode == 1 and bad.stderr.count('\n') == 1, bad.stderr
    assert 'refit: studio_share 1.0 must lie between 0 and 1' in bad.stderr
    assert not (tmp_path/'out').exists()


def test_a_bad_weights_file_is_one_line_before_the_data_is_read(tmp_path):
    "`--weights` that are not ResNet18's (text, a pickle, another network's tensors) are refused in one line, before the data is read (here there is none)."
    import pickle, torch
    (tmp_path/'text.pth').write_text('not weights')
    (tmp_path/'pickle.pth').write_bytes(pickle.dumps({'a': 1}))
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path/'other.pth')
    for name in ('text.pth', 'pickle.pth', 'other.pth'):
        r = run([str(BIN/'fruit360'), 'train', '--model', 'resnet18', '--weights', str(tmp_path/name), '--data', str(tmp_path/'no data'),
                 '--out', str(tmp_path/'out')], store(tmp_path))
        assert r.returncode == 1 and r.stderr.count('\n') == 1, r.stderr
        assert r.stderr.startswith(f"fruit360 train: error: ResNet18 weights file '{tmp_path/name}' is not a ResNet18 state dict"), r.stderr
    assert not (tmp_path/'out').exists()

"Training on several processes: `torchrun --nproc-per-node 2` on the CPU (gloo) trains one run, written once, its metrics over whole splits."
import json, os, subprocess, sys, time
from mlflow import MlflowClient
from helpers import BIN, free_port
from fruit360.checkpoint import load_checkpoint
from fruit360.loaders import get_dls
from fruit360.training import evaluate, fruit_learner


def train_args(data, folder) -> list[str]:
    return ['train', '--epochs', '2', '--bs', '16', '--data', str(data), '--out', str(folder/'out'), '--plots', str(folder/'plots'),
            '--experiment', 'ddp', '--refit-head']  # the last layer refit too: fitted in each process, rank 0's kept by all


def timed(cmd, folder) -> float:
    "Run `cmd` with its own SQLite tracking store in `folder`; the seconds it took."
    start = time.perf_counter()
    r = subprocess.run(cmd, env={**os.environ, 'MLFLOW_TRACKING_URI': f'sqlite:///{folder}/mlflow.db'}, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return time.perf_counter() - start


def test_two_processes_train_one_run_whose_test_metrics_are_those_of_its_checkpoint(fixture_data, tmp_path):
    two, one = tmp_path/'two', tmp_path/'one'
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--nnodes', '1',
                '--master-addr', '127.0.0.1', '--master-port', str(free_port()), '--no-python', str(BIN/'fruit360')]
    t2 = timed([*torchrun, *train_args(fixture_data, two)], two.mkdir() or two)
    t1 = timed([str(BIN/'fruit360'), *train_args(fixture_data, one)], one.mkdir() or one)
    print(f'the same tiny run (2 epochs, generated fixture, CPU): 2 processes {t2:.1f} s, 1 process {t1:.1f} s (whole commands)')

    assert sorted(os.listdir(two/'out')) == ['custom_cnn.pth', 'custom_cnn_results.json']  # one writer: nothing twice, no leftovers
    assert sorted(os.listdir(two/'plots')) == ['custom_cnn_confusion.png', 'custom_cnn_curves.png']
    res = json.loads((two/'out'/'custom_cnn_results.json').read_text())
    assert res['device'].endswith('x 2 processes') and len(res['history']) == 2
    refit, alone = res['refit_head'], json.loads((one/'out'/'custom_cnn_results.json').read_text())['refit_head']
    assert refit['studio'] == alone['studio'] > 0 and refit['faulted'] == alone['faulted'] == 2
    # the refit runs after the distributed fit, on whole loaders: each process fits to every training image, as one process does
    # (a faulted pass is all but the last partial batch of 16), not to its share of the passes
    assert refit['images'] == alone['images'] == refit['studio'] + 2 * (refit['studio'] // 16 * 16), (refit, alone)
    client = MlflowClient(f'sqlite:///{two}/mlflow.db')
    runs = client.search_runs([client.get_experiment_by_name('ddp').experiment_id])
    assert [r.info.run_id for r in runs] == [res['mlflow_run_id']] and runs[0].info.status == 'FINISHED'  # one MLflow run
    assert [m.step for m in client.get_metric_history(res['mlflow_run_id'], 'f1_macro')] == [1, 2]  # logged once per epoch

    model, ckpt = load_checkpoint(two/'out'/'custom_cnn.pth')
    assert ckpt['mlflow_run_id'] == res['mlflow_run_id']
    assert ckpt['f1_macro'] == res['valid']['f1_macro']  # the score of the weights it holds, the refit layer's
    dls = get_dls(fixture_data, bs=16, seed=res['seed'])
    learn = fruit_learner(dls, model, precision=res['precision'])
    with learn.no_bar():
        test, valid = evaluate(learn, dls.test), evaluate(learn, dls.valid)  # one process, all of each split
    assert res['n_test'] == test['n_images'] == len(dls.test.dataset)
    assert res['test'] == {k: test[k] for k in ('accuracy', 'f1_macro')}
    assert res['valid'] == {k: valid[k] for k in ('accuracy', 'f1_macro')}

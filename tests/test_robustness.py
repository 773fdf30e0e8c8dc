"Robust to real photos (issue 16): the corruption benchmark is deterministic and graded, training never imitates its held-out types, and the shipped model stays right on darker, flatter, blurred, noisy photos on other backgrounds."
import json, importlib.util, math, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from conftest import REAL, needs_real_data
from fruit360.train import EPOCHS

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('bench_robustness', ROOT/'bench'/'robustness.py')
R = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(R)  # the corruption benchmark


def fruit_like(n=6, seed=0):
    "uint8 (n,100,100,3): coloured discs on white, the look of a Fruits-360 frame."
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:100, :100]
    out = np.full((n, 100, 100, 3), 255, np.uint8)
    for i in range(n):
        disc = (yy - 50) ** 2 + (xx - 50) ** 2 < rng.integers(20, 40) ** 2
        out[i][disc] = rng.integers(0, 200, 3)
    return out


def test_every_corruption_is_deterministic_and_grows_with_severity():
    x = fruit_like()
    for name in R.PARAMS:
        a, b = R.corrupt(x, name, 3, seed=1), R.corrupt(x, name, 3, seed=1)
        assert a.dtype == np.uint8 and a.shape == x.shape and (a == b).all(), name
        change = [np.abs(R.corrupt(x, name, s).astype(int) - x).mean() for s in (1, 5)]
        assert change[1] > change[0] > 0, (name, change)  # severity 5 changes more than severity 1, which changes something


def test_unknown_corruptions_and_severities_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown corruption 'fog'"): R.corrupt(fruit_like(1), 'fog', 1)
    with pytest.raises(ValueError, match='severity must be one of 1-5'): R.corrupt(fruit_like(1), 'darken', 6)


def test_twins_count_as_one_class_in_the_benchmark():
    "A prediction of a class's twin counts as right, of any other class as wrong; chained pairs form one group."
    groups = R.twin_groups(['Apple 21', 'Apple Rotten 1', 'Kiwi', 'a', 'b', 'c'], {('Apple 21', 'Apple Rotten 1'): 341, ('a', 'b'): 1, ('b', 'c'): 2})
    assert groups == {'Apple 21': 'Apple 21 = Apple Rotten 1', 'Apple Rotten 1': 'Apple 21 = Apple Rotten 1', 'a': 'a = b = c', 'b': 'a = b = c', 'c': 'a = b = c'}
    assert R.accuracy(['Apple Rotten 1', 'Kiwi', 'c', 'Apple 21'], ['Apple 21', 'Kiwi', 'a', 'Kiwi'], groups) == 0.75


def test_training_never_draws_a_held_out_corruption():
    "The photo faults imitate only the train family: impulse noise, motion/zoom blur, pixelation and textured backgrounds stay unseen."
    from fruit360.augment import PHOTO_FAULTS
    words = lambda name: set(name.replace('_', ' ').split())
    held = {'impulse', 'motion', 'zoom', 'pixelate', 'stripes', 'checker'}
    assert not any(words(f) & held for f in PHOTO_FAULTS), list(PHOTO_FAULTS)
    assert set(R.HELD_OUT) | set(R.TRAIN_FAMILY) == set(R.PARAMS) and not set(R.HELD_OUT) & set(R.TRAIN_FAMILY)


def imagenet_c():
    "bench/imagenet_c.py as a module (it imports bench/robustness.py beside it)."
    if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
    return importlib.import_module('bench.imagenet_c')


def test_imagenet_c_runs_each_of_its_corruptions_deterministically():
    "ImageNet-C's own code (imagecorruptions 1.1.2, bridged to today's NumPy and scikit-image): all 19 corruptions run on fruit-like frames, keep their shape, change them, and repeat for a seed."
    IC, x = imagenet_c(), fruit_like(2)
    assert IC.names() == list(IC.GROUP) and len(IC.GROUP) == 19  # every corruption has its group
    for name in IC.names():
        a, b, other = IC.corrupt(x, name, 2, seed=1), IC.corrupt(x, name, 2, seed=1), IC.corrupt(x, name, 5, seed=1)
        assert a.dtype == np.uint8 and a.shape == x.shape and (a == b).all(), name
        assert (a != x).any() and (other != a).any(), name  # a corruption, and another at another severity
    with pytest.raises(ValueError, match="unknown ImageNet-C corruption.*darken: choose from gaussian_noise"): IC.corrupt(x, 'darken', 1)
    with pytest.raises(ValueError, match='severity must be one of 1-5'): IC.corrupt(x, 'fog', 0)


def test_imagenet_c_compares_models_as_a_user_runs_it(data_path, tmp_path):
    "Two corruptions at two severities, 1 Test image per class, the shipped model given twice: one block each, the same figures; bad options in one line."
    run = lambda *args: subprocess.run([sys.executable, '-m', 'bench.imagenet_c', '--data', str(data_path), *args],
                                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    for args, says in [(('--corruptions', 'fog,darken'), 'unknown ImageNet-C corruption(s) darken'),
                       (('--severities', '0'), '--severities takes numbers 1-5'), (('--model', 'model.pth'), "is not an .onnx file")]:
        bad = run(*args)
        assert bad.returncode == 2 and bad.stderr.count('\n') == 1 and says in bad.stderr, bad.stderr
    shipped, copy = ROOT/'fruit360'/'models'/'default.onnx', tmp_path/'copy.onnx'
    copy.write_bytes(shipped.read_bytes())
    out = run('--per-class', '1', '--corruptions', 'fog,impulse_noise', '--severities', '1,3', '--model', str(shipped), '--model', str(copy),
              '--json', str(tmp_path/'c.json'))
    if data_path != REAL:  # the fixture's classes are not the shipped model's: refused in one line
        assert out.returncode == 2 and out.stderr.count('\n') == 1 and 'classes the model' in out.stderr, out.stderr
        return
    assert out.returncode == 0, out.stderr
    a, b = json.loads((tmp_path/'c.json').read_text())['models'].values()
    assert a == b and list(a['accuracy']) == ['fog', 'impulse_noise'] and a['clean'] > 0.95, (a, b)  # the same images for each model
    assert a['group_mean'] == {'train family': None, 'held out': a['mean']['impulse_noise'], 'no counterpart': a['mean']['fog']}
    assert out.stdout.count('worst at severity 3') == 2


def test_the_benchmark_runs_as_a_user_runs_it(data_path, tmp_path):
    "One corruption at two severities on 2 Test images per class, with the shipped model: a table and a JSON file."
    out = subprocess.run([sys.executable, '-m', 'bench.robustness', '--data', str(data_path), '--per-class', '2',
                          '--corruptions', 'darken,bg_checker', '--severities', '1,3', '--json', str(tmp_path/'r.json')],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    if data_path != REAL:  # the fixture's classes are not the shipped model's: the script says so in one line
        assert out.returncode != 0 and out.stderr.count('\n') <= 2, out.stderr
        return
    assert out.returncode == 0, out.stderr
    assert 'held out (never train on these)' in out.stdout and 'worst at severity 3' in out.stdout
    assert (tmp_path/'r.json').exists()


def test_the_recipe_time_bench_times_both_recipes_in_turn(fixture_data, tmp_path):
    "bench/recipe_time.py as a user runs it, on the generated fixture: each recipe timed once per round, the refit once per count of faulted passes, and the projected ratio from the medians, for the epochs `fruit360 train` trains."
    run = lambda *args: subprocess.run([sys.executable, '-m', 'bench.recipe_time', '--data', str(fixture_data), *args],
                                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    out = run('--rounds', '2', '--before-epochs', '20', '--refit-faulted', '1', '3', '--json', str(tmp_path/'t.json'))
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path/'t.json').read_text())
    assert r['epochs'] == EPOCHS['custom_cnn']  # the recipe as `make train` runs it, unless told otherwise
    assert [len(r['epoch_s'][k]) for k in ('studio', 'robust')] == [2, 2] and min(r['epoch_s']['studio'] + r['epoch_s']['robust']) > 0
    assert list(r['refit_s']) == ['1', '3'] and min(r['refit_s'].values()) > 0  # the recipe's last step, the last layer fitted anew, timed for each count of faulted passes
    for k, refit_s in r['refit_s'].items():
        assert abs(r['ratio'][k] - (EPOCHS['custom_cnn'] * r['median_s']['robust'] + refit_s) / (20 * r['median_s']['studio'])) < 1e-9
        assert f"the refit ({k} faulted) " in out.stdout and f"{r['ratio'][k]:.2f}x (limit 2x)" in out.stdout
    for args, says in [(('--rounds', '0'), '--rounds must be at least 1'), (('--refit-faulted', '0'), '--refit-faulted takes counts of passes of 1 or more')]:
        bad = run(*args)
        assert bad.returncode != 0 and says in bad.stderr and 'Traceback' not in bad.stderr, bad.stderr


def test_the_refit_sweep_chooses_the_penalty_on_validation_images(fixture_data, tmp_path):
    "bench/refit_sweep.py as a user runs it, on the generated fixture and an untrained network: one fit per penalty, count of faulted passes and studio share, scored on clean and faulted validation images, the lowest mean loss among the fits with no clean error chosen."
    import torch
    from fastai.torch_core import set_seed
    from fruit360.checkpoint import model_spec, build_model, save_checkpoint
    from fruit360.data import check_dataset
    from fruit360.loaders import get_dls
    spec_ = importlib.util.spec_from_file_location('bench_refit_sweep', ROOT/'bench'/'refit_sweep.py')
    S = importlib.util.module_from_spec(spec_); spec_.loader.exec_module(S)
    dls = get_dls(fixture_data, bs=16, device='cpu')  # the sweep's split: a checkpoint without a run's record gets the defaults
    n_train, valid = len(dls.train_ds), dls.test_dl(dls.valid_ds.items, with_labels=True)
    set_seed(0)
    (xb, yb), (fb, fy) = next(iter(valid)), next(S.training_batches(dls, valid))
    assert torch.equal(yb, fy) and (fb - xb).abs().mean() > 0.05  # the same images, through the training augmentation

    classes = check_dataset(fixture_data).classes
    spec = model_spec('custom_cnn', n_classes=len(classes))
    torch.manual_seed(0); net = build_model(spec)
    ckpt, shuffled = save_checkpoint(net, tmp_path/'net.pth', spec, classes), save_checkpoint(net, tmp_path/'other.pth', spec, classes[::-1])
    run = lambda *args, checkpoint=ckpt: subprocess.run([sys.executable, '-m', 'bench.refit_sweep', '--data', str(fixture_data), '--checkpoint', str(checkpoint), *args],
                                                        capture_output=True, text=True, cwd=ROOT, timeout=600)
    out = run('--wd', '0', '1e-4', '1e-1', '--faulted', '2', '1', '--studio-share', '0.9', '0.2', '--faulted-valid', '1', '--json', str(tmp_path/'s.json'))
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path/'s.json').read_text())
    assert [(row['faulted'], row['studio_share'], row['wd']) for row in r['rows']] == [(k, s, wd) for k in (1, 2) for s in (0.2, 0.9) for wd in (0, 1e-4, 1e-1)]
    one, two = r['rows'][0]['images'], r['rows'][6]['images']  # each pass of the training loader adds the same number of images
    assert two - one == one - n_train > 0, (n_train, one, two)
    for row in r['rows']:
        assert abs(row['criterion'] - (row['valid_loss'] + row['faulted_valid_loss']) / 2) < 1e-12
        assert row['loss_after'] <= row['loss_before'] and isinstance(row['studio_errors'], int)
    eligible = [row for row in r['rows'] if row['studio_errors'] == row['valid_errors'] == 0]
    best = min(eligible or r['rows'], key=lambda row: row['criterion'])
    assert r['eligible'] == len(eligible) and (r['best_faulted'], r['best_studio_share'], r['best_wd']) == (best['faulted'], best['studio_share'], best['wd'])
    assert f"faulted {best['faulted']}, share {best['studio_share']:.3g}, wd {best['wd']:g}" in out.stdout
    flags = f"--refit-faulted {best['faulted']} --refit-studio-share {best['studio_share']!r} --refit-wd {best['wd']!r} --refit-steps"
    assert f"to train with it: fruit360 train --refit-head {flags}" in out.stdout  # the choice, as flags of the command that trains with it
    from fastcore.script import anno_parser
    from fruit360.train import train, planned_refit
    command = out.stdout.split('to train with it: fruit360 train ')[1].split('\n')[0].split()
    parsed = anno_parser(getattr(train, '__wrapped__', train)).parse_args(command)  # `fruit360 train`'s own parser reads the same numbers back
    chosen = dict(faulted=parsed.refit_faulted, studio_share=parsed.refit_studio_share, wd=parsed.refit_wd, steps=parsed.refit_steps)
    assert parsed.refit_head and planned_refit(True, chosen) == dict(faulted=best['faulted'], studio_share=best['studio_share'], wd=best['wd'], steps=r['steps'])
    assert ('of the fits with no clean error' if eligible else 'every fit left a studio frame or validation image wrong') in out.stdout
    assert r['rows'][2]['weight_norm'] < r['rows'][1]['weight_norm']  # a larger penalty, smaller weights
    assert r['rows'][1]['weight_norm'] != r['rows'][4]['weight_norm']  # the studio share weighs the images differently: another layer
    again = run('--wd', '1e-4', '--faulted', '1', '2', '--studio-share', '0.9', '--faulted-valid', '1', '--from-zeros', '--json', str(tmp_path/'again.json'))  # the same seed: the same draws, the same fits
    assert again.returncode == 0, again.stderr
    rows = json.loads((tmp_path/'again.json').read_text())['rows']
    assert [row['criterion'] for row in rows] == [r['rows'][4]['criterion'], r['rows'][10]['criterion']]
    for row in rows:  # fitted again from zero weights: a solved fit gives the same layer whatever its start
        assert row['from_zeros']['max_prob_diff'] < 1e-3 and math.isclose(row['from_zeros']['criterion'], row['criterion'], rel_tol=1e-3), row['from_zeros']
    assert 'from zeros: mean' in again.stdout and 'from zeros' not in out.stdout
    alone = run('--wd', '1e-4', '--faulted', '1', '--studio-share', '0.9', '--faulted-valid', '1', '--json', str(tmp_path/'alone.json'))
    assert alone.returncode == 0, alone.stderr  # one pass only: the same first pass, and the same faulted validation draws whatever --faulted
    assert [row['criterion'] for row in json.loads((tmp_path/'alone.json').read_text())['rows']] == [r['rows'][4]['criterion']]
    for args, checkpoint, says in [(('--faulted-valid', '0'), ckpt, '--faulted-valid must be at least 1'),
                                   (('--faulted', '0'), ckpt, '--faulted takes counts of passes of 1 or more'),
                                   (('--studio-share', '1'), ckpt, '--studio-share takes shares between 0 and 1'),
                                   (('--wd', '-1'), ckpt, '--wd takes penalties of 0 or more'),
                                   (('--steps', '20000'), ckpt, 'refit: steps 20000 must be a whole number of iterations from 1 to 10,000'),
                                   ((), shuffled, 'was trained on other classes')]:
        bad = run(*args, checkpoint=checkpoint)
        assert bad.returncode != 0 and says in bad.stderr and 'Traceback' not in bad.stderr, bad.stderr


@needs_real_data
def test_the_shipped_model_is_right_on_photo_faults_it_never_saw_in_this_form():
    "Severity 3 of each corruption type on 4 Test images per class: every type at least MIN_AT_3, twins as one class."
    images, labels, groups = R.load_test(REAL, 4)
    res = R.run_benchmark(R.onnx_classifier(None), images, labels, groups, list(R.PARAMS), severities=(3,))
    assert res['clean'] >= 0.99, res['clean']  # 1.0 on all 6,068 Test images (twins as one) since 2026-12-04
    low = {c: a[3] for c, a in res['accuracy'].items() if a[3] < MIN_AT_3}
    assert not low, low


MIN_AT_3 = 0.75  # the floor for any corruption at moderate severity

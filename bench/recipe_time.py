"""Training time of the robust recipe against the studio recipe before it, measured side by side in one run
(issue 16: the robust recipe may take at most twice the CPU training time).

    .venv/bin/python -m bench.recipe_time [--data PATH] [--max-per-class 0] [--rounds 3] [--epochs 26] [--before-epochs 20]
                                          [--refit-faulted 2] [--json f.json]

One set of loaders (the tensor cache, as `fruit360 train`), two learners:
- studio: the recipe before issue 16, its network (`CustomCNN(standardize=False, channels=(32, 64, 128, 256))`, what
  `checkpoint.ARCHITECTURES` says a checkpoint without those arguments means) with `FruitAugment`'s photo faults off;
- robust: today's recipe, `CustomCNN()` (standardised input, 384 channels in the last block) with the photo faults on half of each batch,
  and at its end the last layer fitted anew (`refit_last_linear`, `fruit360 train --refit-head`), timed once after the rounds
  (once for each `--refit-faulted` count of faulted training passes it fits, each from the same layer).
Each fits one epoch to warm up, then they take turns, one epoch each, for `--rounds` rounds (who goes first
alternates), so a machine whose speed drifts (shared cores) slows both alike. It runs on the CPU even beside a GPU. An epoch's time is its training and validation pass, what a run's wall time is
made of. The ratio projects whole runs from the median epochs: `--epochs` robust epochs (default: what `fruit360 train`
trains, `fruit360.train.EPOCHS`) and the refit against `--before-epochs` studio epochs (the 20 of the recipe before). Left out: what a run costs
besides its epochs (decoding the data, the final evaluation, MLflow logging), the same for both recipes.
The loss and metrics of these epochs do not matter: only their time is measured.
"""
import argparse, copy, json, statistics, time
import torch

from fruit360.augment import FruitAugment
from fruit360.checkpoint import ARCHITECTURES, last_linear
from fruit360.custom_cnn import CustomCNN
from fruit360.data import find_data
from fruit360.loaders import get_dls
from fruit360.train import EPOCHS
from fruit360.training import REFIT, fruit_learner, refit_last_linear, refit_settings

RECIPES = {'studio': (ARCHITECTURES['custom_cnn'].added, 0.), 'robust': ({}, 0.5)}  # name -> (CustomCNN arguments, FruitAugment p_photo)


def augment_of(dls) -> FruitAugment:
    "The `FruitAugment` of `dls`' training batches."
    return next(t for t in dls.train.after_batch.fs if isinstance(t, FruitAugment))


def epoch_s(learn, p_photo:float) -> float:
    "Seconds of one epoch (training and validation) of `learn` with photo faults on a `p_photo` share of each batch."
    augment_of(learn.dls).p_photo = p_photo
    start = time.perf_counter()
    with learn.no_logging(), learn.no_bar(): learn.fit(1)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=None, help='Fruits-360 folder (default: $FRUIT360_DATA, else the cached download)')
    p.add_argument('--max-per-class', type=int, default=0, help='images per class and split (0: all, as a real run)')
    p.add_argument('--rounds', type=int, default=3, help='timed epochs of each recipe, taking turns')
    p.add_argument('--epochs', type=int, default=EPOCHS['custom_cnn'], help="robust recipe's epochs (default: fruit360 train's)")
    p.add_argument('--before-epochs', type=int, default=20, help="studio recipe's epochs")
    p.add_argument('--refit-faulted', type=int, nargs='+', default=[REFIT['faulted']], help="faulted training passes of the timed refit (refit_last_linear's faulted), each count timed")
    p.add_argument('--json', default=None, help='write the results here')
    a = p.parse_args()
    if a.rounds < 1: p.error('--rounds must be at least 1')
    if min(a.refit_faulted) < 1: p.error('--refit-faulted takes counts of passes of 1 or more')
    try:
        for k in a.refit_faulted: refit_settings(faulted=k)  # what the refit would refuse after the timed rounds, refused now
    except ValueError as e: p.error(f'--refit-faulted: {e}')
    dls = get_dls(find_data(a.data), bs=64, max_per_class=a.max_per_class or None, device='cpu')  # the CPU's training time, even beside a GPU
    learners = {k: fruit_learner(dls, CustomCNN(len(dls.vocab), **kw)) for k, (kw, _) in RECIPES.items()}
    print(f'{len(dls.train_ds):,} training and {len(dls.valid_ds):,} validation images, {torch.get_num_threads()} threads', flush=True)
    for k, learn in learners.items(): epoch_s(learn, RECIPES[k][1])  # warm-up
    times = {k: [] for k in RECIPES}
    for r in range(a.rounds):
        for k in (list(RECIPES) if r % 2 == 0 else list(RECIPES)[::-1]):  # who goes first alternates
            times[k].append(epoch_s(learners[k], RECIPES[k][1]))
        print(f'round {r + 1}: ' + ', '.join(f'{k} {v[-1]:.1f} s' for k, v in times.items()), flush=True)
    augment_of(dls).p_photo = RECIPES['robust'][1]  # the faulted pass as the recipe draws it (the learners share the augmentation)
    layer = learners['robust'].model.get_submodule(last_linear(learners['robust'].model))
    trained, refit_s = copy.deepcopy(layer.state_dict()), {}
    for k in a.refit_faulted:
        layer.load_state_dict(trained)  # each refit from the trained layer
        start = time.perf_counter(); refit_last_linear(learners['robust'], faulted=k); refit_s[k] = time.perf_counter() - start
    med = {k: statistics.median(v) for k, v in times.items()}
    studio_s = a.before_epochs * med['studio']
    ratio = {k: (a.epochs * med['robust'] + s) / studio_s for k, s in refit_s.items()}
    print(f"median epoch: studio {med['studio']:.1f} s, robust {med['robust']:.1f} s ({med['robust'] / med['studio']:.2f}x); last layer refit "
          + ', '.join(f'{s:.1f} s ({k} faulted)' for k, s in refit_s.items()))
    for k, s in refit_s.items():
        print(f"whole runs: robust {a.epochs} epochs and the refit ({k} faulted) {(a.epochs * med['robust'] + s) / 60:.1f} min, studio {a.before_epochs} epochs "
              f"{studio_s / 60:.1f} min: {ratio[k]:.2f}x (limit 2x)")
    if a.json:
        open(a.json, 'w').write(json.dumps(dict(n_train=len(dls.train_ds), n_valid=len(dls.valid_ds), epoch_s=times, median_s=med, refit_s=refit_s,
                                                epochs=a.epochs, before_epochs=a.before_epochs, ratio=ratio), indent=1))


if __name__ == '__main__': main()

"""The weight penalty of the last layer refit (`refit_last_linear`, `fruit360 train --refit-head`), its number of
faulted passes and the studio frames' share of its loss, chosen on the validation images: among the fits that get every
studio frame (a training image as it is) and every validation image right, the one with the lowest validation loss,
averaged over the validation images as they are and the same images with the training's augmentation and photo faults.

    .venv/bin/python -m bench.refit_sweep [--checkpoint models_artifacts/custom_cnn.pth] [--data PATH] [--wd 0 3e-6 1e-5 3e-5 1e-4 3e-4]
                                          [--faulted 2] [--studio-share 0.5] [--steps 200] [--faulted-valid 2] [--bs 64] [--seed 0] [--from-zeros] [--json f.json]

The validation split is the checkpoint's own (its run's seed and share, and the digest of the images it held out,
checked), so nothing is chosen on images the network trained on. The features of the checkpoint's network are computed
once: what the refit fits (the training images as they are, then passes of the training loader with the faults, as
many as the largest `--faulted`; a count k uses the first k passes), the validation images as they are and
`--faulted-valid` passes of them through the training's batch augmentation (seeded on their own, so the same whatever
`--faulted`; until 2026-12-04 they were drawn after the training passes, and the sweeps recorded before then compare
only rows of one run), and the Test images. For each count of
passes, each studio share (the studio frames' part of the loss, the faulted passes' the rest: `view_weights`) and each
penalty the layer is then fitted (`fit_linear`, `--steps` L-BFGS iterations, from the checkpoint's last layer) and
scored. The loss is the mean negative log-probability of the right class, twin classes (byte-identical images) as one:
their probabilities summed. Errors count as the project's metrics do: the most probable class, mapped to its twin
group. A fit is eligible when it leaves no studio frame and no clean validation image wrong (the clean target, on the
images the fit and the choice see); the lowest loss among the eligible fits is chosen, among all fits if none is.
Test errors are printed beside, to be reported, not to choose by. The refit changes only the last
layer, so any checkpoint of the network will do. With a positive penalty the weights' optimum is unique (the bias only
up to a shift that changes no probability), so a fit solved to the end does not depend on where it starts: with
`fit_linear`'s L-BFGS memory of 100 steps (since 2026-12-04) 200 iterations get there from any start, criteria within
0.0001 (with a memory of 20 they stopped short at small penalties and the start moved the criterion by about 0.002,
`02b_training`). Each row records the loss the fit reached and the iterations it used; `--from-zeros` fits each again
from zero weights and records its criterion and how far its validation probabilities are from the first fit's.
"""
import argparse, json, math, time, zlib
from pathlib import Path
import numpy as np, torch
import torch.nn.functional as F
from fastai.torch_core import set_seed
from fastai.vision.all import Normalize, TensorImage

from fruit360.augment import FruitAugment
from fruit360.checkpoint import last_linear, load_checkpoint
from fruit360.data import find_data, twin_groups
from fruit360.loaders import get_dls
from fruit360.train import validation_digest
from fruit360.training import REFIT, fit_linear, linear_inputs, refit_inputs, refit_settings, view_weights


def training_batches(dls, dl):
    "The batches of `dl` (a loader without augmentation) through the training loader's `FruitAugment`, photo faults included."
    fs = dls.train.after_batch.fs
    augment = next(t for t in fs if isinstance(t, FruitAugment))
    normalize = next((t for t in fs if isinstance(t, Normalize)), None)
    for xb, yb in dl:
        x = normalize.decodes(xb) if normalize else xb
        x = augment(TensorImage(x), split_idx=0)
        yield (normalize(x, split_idx=0) if normalize else x), yb


def scores(params, x, y, groups:torch.Tensor) -> dict:
    "Loss (mean negative log-probability of the right twin group) and errors (the top class's group wrong) of the layer `params` on features `x`, labels `y`."
    logits = F.linear(x, *params)
    pg = torch.zeros(len(x), int(groups.max()) + 1).index_add_(1, groups, logits.softmax(1))  # probabilities of the twin groups
    yg = groups[y]
    return dict(loss=-pg[torch.arange(len(y)), yg].clamp_min(1e-12).log().mean().item(), errors=int((groups[logits.argmax(1)] != yg).sum()))

def from_zeros(x, y, params, wd:float, steps:int, weight, valid, faulted, groups) -> dict:
    "The same fit from zero weights: its validation criterion and the largest difference of its validation probabilities from the fit `params` (0 for a fit solved to the end, whatever its start)."
    other, fit = fit_linear(x, y, [torch.zeros_like(q) for q in params], wd, steps, weight)
    criterion = (scores(other, *valid, groups)['loss'] + float(np.mean([scores(other, *v, groups)['loss'] for v in faulted]))) / 2
    gap = (F.linear(valid[0], *other).softmax(1) - F.linear(valid[0], *params).softmax(1)).abs().max().item()
    return dict(criterion=criterion, max_prob_diff=gap, loss_after=fit['loss_after'], iterations=fit['iterations'])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', default='models_artifacts/custom_cnn.pth', help='a checkpoint of fruit360 train')
    p.add_argument('--data', default=None, help='Fruits-360 folder (default: $FRUIT360_DATA, else the cached download)')
    p.add_argument('--max-per-class', type=int, default=0, help='images per class and split (0: all, as the run was trained)')
    p.add_argument('--bs', type=int, default=64, help="batch size of the faulted training pass (fruit360 train's: 64)")
    p.add_argument('--wd', type=float, nargs='+', default=[0, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4], help='weight penalties to try')
    p.add_argument('--faulted', type=int, nargs='+', default=[REFIT['faulted']], help="passes of the training loader the refit fits beside the images as they are (refit_last_linear's faulted), each count tried")
    p.add_argument('--studio-share', type=float, nargs='+', default=[REFIT['studio_share']], help="the studio frames' share of the loss (refit_last_linear's studio_share), each tried")
    p.add_argument('--steps', type=int, default=REFIT['steps'], help='L-BFGS iterations at most (refit_last_linear\'s steps)')
    p.add_argument('--faulted-valid', type=int, default=2, help='passes of the validation images with the photo faults')
    p.add_argument('--seed', type=int, default=0, help='seed of the augmentation draws')
    p.add_argument('--from-zeros', action='store_true', help='fit each also from zero weights: how much the result depends on where L-BFGS starts (a solved fit does not)')
    p.add_argument('--json', default=None, help='write the results here')
    a = p.parse_args()
    for name, value, least in [('--faulted-valid', a.faulted_valid, 1), ('--steps', a.steps, 1), ('--bs', a.bs, 1), ('--max-per-class', a.max_per_class, 0)]:
        if value < least: p.error(f'{name} must be at least {least}')
    if not all(math.isfinite(w) and w >= 0 for w in a.wd): p.error('--wd takes penalties of 0 or more')
    if min(a.faulted) < 1: p.error('--faulted takes counts of passes of 1 or more')
    if not all(0 < s < 1 for s in a.studio_share): p.error('--studio-share takes shares between 0 and 1 (both excluded)')
    try:  # each setting one `fruit360 train` takes, so the flags printed at the end train with the choice
        for k, share, wd in [(k, share, wd) for k in a.faulted for share in a.studio_share for wd in a.wd]: refit_settings(faulted=k, studio_share=share, wd=wd, steps=a.steps)
    except ValueError as e: p.error(str(e))
    if a.json and not Path(a.json).resolve().parent.is_dir(): p.error(f"--json {a.json}: its folder does not exist")
    try: model, meta = load_checkpoint(a.checkpoint)
    except (ValueError, FileNotFoundError) as e: p.error(str(e))
    run = meta.get('results') or {}
    set_seed(a.seed)  # before the loaders: their shuffling draws its seed when they are made
    try: dls = get_dls(find_data(a.data), bs=a.bs, max_per_class=a.max_per_class or None, device='cpu',
                       seed=run.get('seed', 42), valid_pct=run.get('valid_pct', 0.15))  # the run's own split
    except (ValueError, FileNotFoundError, OSError) as e: p.error(str(e))
    if list(dls.vocab) != list(meta['classes']): p.error(f'{a.checkpoint} was trained on other classes than the data at {dls.summary.path}')
    if run.get('valid_digest') and validation_digest(dls) != run['valid_digest']:
        p.error(f'the validation images here are not the ones {a.checkpoint} held out (other data or --max-per-class): '
                'its penalty would be chosen on images it trained on')
    if not len(dls.train): p.error(f'{len(dls.train_ds)} training images make no full batch of --bs {a.bs}: pass a smaller --bs')
    groups = torch.as_tensor(twin_groups(list(dls.vocab), dls.summary.twins))
    valid = dls.test_dl(dls.valid_ds.items, with_labels=True)
    start = time.perf_counter()
    fitted = refit_inputs(model, dls, max(a.faulted))  # what the refit fits, view by view, with the most passes asked for
    studio, n_fitted = len(fitted[0][1]), sum(len(v[1]) for v in fitted)
    views = {'valid': linear_inputs(model, valid), 'test': linear_inputs(model, dls.test)}
    set_seed(zlib.crc32(b'faulted validation %d' % a.seed))  # their own draws: the same whatever --faulted, and unlike any --seed's training draws (since 2026-12-04)
    faulted = [linear_inputs(model, training_batches(dls, valid)) for _ in range(a.faulted_valid)]
    print(f'features of {n_fitted:,} training ({studio:,} as they are, {max(a.faulted)} faulted passes), {len(views["valid"][1]):,} validation ({a.faulted_valid} faulted passes besides) and '
          f'{len(views["test"][1]):,} Test images: {time.perf_counter() - start:.0f} s', flush=True)
    linear = model.get_submodule(last_linear(model))
    start_params = [q for q in (linear.weight, linear.bias) if q is not None]
    rows = []
    for passes in sorted(set(a.faulted)):
        x, y = map(torch.cat, zip(*fitted[:1 + passes]))  # the images as they are and the first `passes` passes, joined once per count
        for share, wd in [(s, wd) for s in sorted(set(a.studio_share)) for wd in a.wd]:
            t, weight = time.perf_counter(), view_weights(fitted[:1 + passes], share)
            params, fit = fit_linear(x, y, start_params, wd, a.steps, weight)
            clean, test, frames = scores(params, *views['valid'], groups), scores(params, *views['test'], groups), scores(params, *fitted[0], groups)
            f = [scores(params, *v, groups) for v in faulted]
            row = dict(faulted=passes, studio_share=share, images=len(y), wd=wd, studio_errors=frames['errors'], valid_loss=clean['loss'], valid_errors=clean['errors'],
                       faulted_valid_loss=float(np.mean([s['loss'] for s in f])), faulted_valid_errors=[s['errors'] for s in f],
                       test_errors=test['errors'], weight_norm=params[0].norm().item(), **fit, seconds=time.perf_counter() - t)
            row['criterion'] = (row['valid_loss'] + row['faulted_valid_loss']) / 2
            if a.from_zeros: row['from_zeros'] = from_zeros(x, y, params, wd, a.steps, weight, views['valid'], faulted, groups)
            rows.append(row)
            print(f"faulted {passes} share {share:.3g} wd {wd:<7g} studio errors {frames['errors']} | validation loss: clean {row['valid_loss']:.4f} ({clean['errors']} errors), faulted {row['faulted_valid_loss']:.4f} "
                  f"({'/'.join(map(str, row['faulted_valid_errors']))} errors) -> mean {row['criterion']:.4f} | Test errors {test['errors']} "
                  f"| fit loss {fit['loss_after']:.4f}, |W| {row['weight_norm']:.1f} ({row['seconds']:.0f} s)"
                  + (f" | from zeros: mean {row['from_zeros']['criterion']:.4f}, validation probabilities within {row['from_zeros']['max_prob_diff']:.1e}" if a.from_zeros else ''), flush=True)
    finite = [r for r in rows if math.isfinite(r['criterion'])]
    if not finite: raise SystemExit('no penalty gave a finite validation loss: the fits diverged')
    eligible = [r for r in finite if r['studio_errors'] == 0 and r['valid_errors'] == 0]
    best = min(eligible or finite, key=lambda r: r['criterion'])
    print(f"lowest validation loss{' of the fits with no clean error' if eligible else ' (every fit left a studio frame or validation image wrong)'}: "
          f"faulted {best['faulted']}, share {best['studio_share']:.3g}, wd {best['wd']:g} (Test errors {best['test_errors']}, twins as one; not used to choose)")
    print(f"to train with it: fruit360 train --refit-head --refit-faulted {best['faulted']} --refit-studio-share {best['studio_share']!r} "
          f"--refit-wd {best['wd']!r} --refit-steps {a.steps}")
    if a.json: Path(a.json).write_text(json.dumps(dict(checkpoint=a.checkpoint, checkpoint_sha256=meta['file_sha256'], steps=a.steps, bs=a.bs,
                                                       seed=a.seed, rows=rows, eligible=len(eligible), best_wd=best['wd'], best_faulted=best['faulted'],
                                                       best_studio_share=best['studio_share']), indent=1))


if __name__ == '__main__': main()

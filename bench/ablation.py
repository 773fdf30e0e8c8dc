"""Which parts of the robust training recipe matter: small custom CNNs trained from scratch with and without each part,
then measured clean and under every corruption of `bench/robustness.py` at severity 3, twins as one class.

    .venv/bin/python -m bench.ablation [--variants studio,full,...] [--train-per-class 40] [--epochs 8] [--json f.json]

Every variant trains the same network on the same images (the first `--train-per-class` Training images per class,
15% of them held out for validation) with the same seed and schedule; only the augmentation (`FruitAugment`'s photo
faults, and for how many of the last epochs they are off) and the input standardisation (`CustomCNN(standardize=...)`)
change. The models are small and one seed each, so differences of a few points are noise; the full recipe's figures come
from the real run (`make train`, then `bench/robustness.py`). Slow on a CPU: about 3-5 minutes per variant at the defaults on 2 cores.
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np

from bench.robustness import HELD_OUT, load_test, run_benchmark
from fruit360.augment import PHOTO_FAULTS

ALL = tuple(PHOTO_FAULTS)
VARIANTS = {  # name -> (what it is, FruitAugment keyword arguments, CustomCNN standardize, share of the last epochs without faults)
    'studio': ('the previous recipe: geometry and mild lighting only', dict(p_photo=0.), False, 0.),
    'standardize': ('+ input standardisation (per channel)', dict(p_photo=0.), 'channel', 0.),
    'faults': ('+ photo faults on half of each batch', dict(p_photo=0.5), False, 0.),
    'full': ('both (the first robust model: per-channel standardisation)', dict(p_photo=0.5), 'channel', 0.),
    'full-global': ('both, standardised with one mean over the channels (the shipped recipe)', dict(p_photo=0.5), 'global', 0.),
    'full-global-finish': ('full-global, the last fifth of the epochs without faults (`--studio-epochs`)', dict(p_photo=0.5), 'global', 0.2),
    'full-background': ('full without new backgrounds', dict(p_photo=0.5, faults=tuple(f for f in ALL if f != 'background')), 'channel', 0.),
    'full-photometric': ('full without exposure, colour, contrast, saturation', dict(p_photo=0.5, faults=('background', 'blur', 'noise')), 'channel', 0.),
    'full-blur-noise': ('full without blur and noise', dict(p_photo=0.5, faults=('background', 'exposure', 'colour', 'contrast', 'saturation')), 'channel', 0.),
    'full-global-no-colour': ('full-global without the gain per channel (the recipe until 2026-12-04)', dict(p_photo=0.5, faults=tuple(f for f in ALL if f != 'colour')), 'global', 0.),
    'full-every-image': ('full, faults on every image', dict(p_photo=1.), 'channel', 0.),
}


def torch_classifier(model, classes, bs:int=256):
    "uint8 batch (N,H,W,3) -> predicted class names, with the PyTorch `model` behind fruit360's inference wrapper."
    import torch
    from fruit360.checkpoint import ProbabilityModel
    net = ProbabilityModel(model).eval()
    def classify(images):
        with torch.inference_mode():
            out = [net(torch.from_numpy(np.ascontiguousarray(images[k:k + bs]))).argmax(1) for k in range(0, len(images), bs)]
        return [classes[i] for i in torch.cat(out).tolist()]
    return classify


def run_variant(name:str, data, train_per_class:int, epochs:int, test:tuple, seed:int=42, lr:float=3e-3) -> dict:
    "Train variant `name` from scratch and measure it clean and at severity 3."
    from fastai.torch_core import set_seed
    from fruit360.augment import FruitAugment
    from fruit360.custom_cnn import CustomCNN
    from fruit360.loaders import get_dls
    from fruit360.training import fit_fruit, fruit_learner
    what, aug, standardize, finish = VARIANTS[name]
    set_seed(seed, reproducible=True)
    dls = get_dls(data, seed=seed, max_per_class=train_per_class, augment=[FruitAugment(**aug)])
    model = CustomCNN(len(dls.vocab), standardize=standardize)
    learn = fruit_learner(dls, model, lr)
    t0 = time.perf_counter()
    fit_fruit(learn, epochs, lr, schedule='onecycle', studio_epochs=round(finish * epochs))
    train_s = time.perf_counter() - t0
    images, labels, groups = test
    res = run_benchmark(torch_classifier(learn.model.float(), list(dls.vocab)), images, labels, groups, severities=(3,))
    res.update(variant=name, what=what, train_s=round(train_s, 1))
    return res


def table(rows:list[dict]) -> str:
    "A Markdown table: one row per variant with clean, mean at severity 3 (train family / held out) and the worst corruption."
    out = ['| variant | what | clean | mean at severity 3 | train family | held out | worst at severity 3 | train time |',
           '|---|---|---|---|---|---|---|---|']
    for r in rows:
        w = r['worst_moderate']
        out.append(f"| {r['variant']} | {r['what']} | {r['clean']:.3f} | {r['moderate_mean']:.3f} | {r['train_family_mean']:.3f} | "
                   f"{r['held_out_mean']:.3f} | {w['corruption']} {w['accuracy']:.3f} | {r['train_s'] / 60:.1f} min |")
    return '\n'.join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--variants', default=','.join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument('--data', default=None, help='Fruits-360 folder (default: $FRUIT360_DATA, else the cached download)')
    p.add_argument('--train-per-class', type=int, default=40)
    p.add_argument('--test-per-class', type=int, default=10)
    p.add_argument('--epochs', type=int, default=8)
    p.add_argument('--json', default=None, help='also write the results to this JSON file (rewritten after each variant)')
    a = p.parse_args(argv)
    names = [v for v in a.variants.split(',') if v]
    if bad := [v for v in names if v not in VARIANTS]:
        print(f"error: unknown variant(s) {', '.join(bad)}: choose from {', '.join(VARIANTS)}", file=sys.stderr); sys.exit(2)
    from fruit360.data import find_data
    data = find_data(a.data)
    test = load_test(data, a.test_per_class)
    print(f'{len(names)} variants, {a.train_per_class} Training images per class, {a.epochs} epochs; '
          f'{len(test[0])} Test images; held out: {", ".join(HELD_OUT)}', flush=True)
    rows = []
    for v in names:
        rows.append(run_variant(v, data, a.train_per_class, a.epochs, test))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        if a.json: Path(a.json).write_text(json.dumps(rows, indent=1) + '\n')
    print(table(rows))


if __name__ == '__main__':
    main()

"""Open-set (issue 11): how well an exported model knows what it does not know, and what it costs `predict`.

    python bench/openset.py [--model PATH] [--data $FRUIT360_DATA] [--n 200] [--before PATH] [--plot PNG]

Prints, for the model (default: the shipped one):
- AUROC of novelty, known Test images vs each set of generated non-fruit images (noise, gradients, shapes, rendered
  text, scenes drawn from primitives, flat colours, blank white; and Test fruit with the background replaced), and pooled;
- the share of known Test images kept `known`, and the share of each generated set flagged not known;
- `predict` p50 on one 100x100 image, before (probabilities only: the same session without fetching the extra
  outputs, and the model `--before`, by default the one committed at git HEAD) and after, in the same run.
With `--plot` it also draws the novelty scores of the known Test images, the pooled non-fruit sets and the fruit on a
replaced background, with the threshold and the lenient one (`plots/openset_scores.png` is made so).
AUROC against fruit varieties the model never saw needs a model trained without them: the issue 11 research run
(a leave-8-classes-out custom CNN) measured 0.994 with the same method; run this script with `--model` on such an export.
The generators are those of that research run (our own code), so the numbers are comparable.
"""
from __future__ import annotations
import argparse, json, os, subprocess, tempfile, time
from pathlib import Path
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


def _size(rng): return int(rng.integers(80, 400)), int(rng.integers(80, 400))
def _col(rng, lo=0, hi=256): return tuple(int(v) for v in rng.integers(lo, hi, 3))

def noise_uniform(rng):
    w, h = _size(rng); return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

def noise_gaussian(rng):
    w, h = _size(rng); m = rng.uniform(30, 225, 3); s = rng.uniform(10, 80)
    img = Image.fromarray(np.clip(rng.normal(m, s, (h, w, 3)), 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 3))))

def gradient(rng):
    w, h = _size(rng); a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    if rng.random() < 0.5: t = np.cos(rng.uniform(0, np.pi)) * xx + np.sin(rng.uniform(0, np.pi)) * yy
    else: t = np.hypot(xx - rng.random(), yy - rng.random())
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    return Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8))

def _shapes(d, rng, w, h, n):
    for _ in range(n):
        x0, y0 = rng.integers(0, w), rng.integers(0, h); x1, y1 = x0 + rng.integers(10, w), y0 + rng.integers(10, h)
        kind, c = rng.integers(0, 4), _col(rng)
        if kind == 0: d.ellipse([x0, y0, x1, y1], fill=c)
        elif kind == 1: d.rectangle([x0, y0, x1, y1], fill=c)
        elif kind == 2: d.polygon([tuple(int(v) for v in rng.integers(0, (w, h))) for _ in range(3 + rng.integers(0, 4))], fill=c)
        else: d.line([tuple(int(v) for v in rng.integers(0, (w, h))) for _ in range(2 + rng.integers(0, 4))], fill=c, width=int(rng.integers(2, 12)))

def shapes_white(rng):
    w, h = _size(rng); img = Image.new('RGB', (w, h), 'white'); _shapes(ImageDraw.Draw(img), rng, w, h, int(rng.integers(1, 6))); return img

def shapes_colour(rng):
    w, h = _size(rng); img = Image.new('RGB', (w, h), _col(rng)); _shapes(ImageDraw.Draw(img), rng, w, h, int(rng.integers(1, 8))); return img

WORDS = 'fruit apple invoice the quick brown fox jumps over lazy dog hello world 2026 total receipt cat photo menu price'.split()

def text(rng):
    w, h = _size(rng); img = Image.new('RGB', (w, h), 'white' if rng.random() < 0.6 else _col(rng, 150)); d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 8))):
        font = ImageFont.load_default(size=int(rng.integers(10, 40)))
        d.text((int(rng.integers(0, w // 2)), int(rng.integers(0, h - 10))), ' '.join(rng.choice(WORDS, int(rng.integers(1, 4)))),
               fill=_col(rng, 0, 120), font=font)
    return img

def scene(rng):
    w, h = _size(rng); img = Image.new('RGB', (w, h)); d = ImageDraw.Draw(img)
    hz = int(h * rng.uniform(0.3, 0.7))
    d.rectangle([0, 0, w, hz], fill=_col(rng, 100)); d.rectangle([0, hz, w, h], fill=_col(rng, 0, 160))  # sky, ground
    if rng.random() < 0.7:
        r = int(rng.integers(5, 30)); cx, cy = int(rng.integers(0, w)), int(rng.integers(0, hz)); d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(250, 220, 60))
    for _ in range(int(rng.integers(1, 6))):  # trees and houses
        x = int(rng.integers(0, w)); bw, bh = int(rng.integers(10, w // 3 + 11)), int(rng.integers(10, h // 2))
        if rng.random() < 0.5:
            d.rectangle([x, hz - bh // 2, x + bw // 4, hz + 5], fill=(90, 60, 30)); d.ellipse([x - bw // 2, hz - bh, x + bw // 2, hz - bh // 3], fill=_col(rng, 0, 150))
        else:
            d.rectangle([x, hz - bh, x + bw, hz + 5], fill=_col(rng)); d.polygon([(x, hz - bh), (x + bw // 2, hz - bh - bw // 2), (x + bw, hz - bh)], fill=_col(rng))
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))

def flat(rng): return Image.new('RGB', _size(rng), _col(rng))

def blank_white(rng):
    v = int(rng.integers(235, 256)); return Image.new('RGB', _size(rng), (v, v, v))

GENERATORS = dict(noise_uniform=noise_uniform, noise_gaussian=noise_gaussian, gradient=gradient, shapes_white=shapes_white,
                  shapes_colour=shapes_colour, text=text, scene=scene, flat=flat, blank_white=blank_white)


def non_fruit(n:int, seed:int=0, sets=None) -> dict[str, list[Image.Image]]:
    "`n` generated non-fruit pictures of each set (all of `GENERATORS`, or `sets`), the same for the same `seed`."
    rng = np.random.default_rng(seed)
    return {k: [g(rng) for _ in range(n)] for k, g in GENERATORS.items() if sets is None or k in sets}


def bg_replaced(test_files, n:int, seed:int=0) -> list[np.ndarray]:
    "`n` fruit Test images (100x100) with their near-white background replaced by a colour, gradient or noise."
    from fruit360.images import load_rgb
    rng, out = np.random.default_rng(seed), []
    for f in rng.choice(np.array(test_files, dtype=object), n, replace=False):
        a = load_rgb(f); bg = (a.astype(int) > 230).all(2)
        m = np.asarray(Image.fromarray((bg * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.GaussianBlur(1)), float)[..., None] / 255
        k = rng.integers(0, 3)
        tex = (np.broadcast_to(np.array(_col(rng), np.uint8), a.shape) if k == 0 else
               np.asarray((gradient if k == 1 else noise_gaussian)(rng).resize(a.shape[1::-1])))
        out.append((a * (1 - m) + tex * m).astype(np.uint8))
    return out


def auroc(known:np.ndarray, unknown:np.ndarray) -> float:
    "AUROC of telling `unknown` (positives, higher score) from `known`; ties count half."
    k = np.sort(known)
    below, upto = np.searchsorted(k, unknown, 'left'), np.searchsorted(k, unknown, 'right')
    return float((below + 0.5 * (upto - below)).sum() / (len(known) * len(unknown)))


def novelty(clf, images) -> np.ndarray:
    "The novelty of each of `images` (anything `load_rgb` takes) under the `OnnxClassifier` `clf`, 256 at a time."
    from fruit360.images import load_rgb
    out = []
    for i in range(0, len(images), 256):
        batch = np.stack([load_rgb(im, clf.size) for im in images[i:i + 256]])
        out.append(clf.run(batch, ['novelty'])[0])
    return np.concatenate(out)


def p50(f, n=500, warmup=20) -> float:
    "Median milliseconds of `f()` over `n` calls."
    for _ in range(warmup): f()
    t = []
    for _ in range(n): s = time.perf_counter(); f(); t.append((time.perf_counter() - s) * 1e3)
    return float(np.median(t))


def previous_model(rev:str='HEAD') -> Path|None:
    "The shipped model as committed at git `rev`, in a temporary file (None if git cannot give it)."
    try: data = subprocess.run(['git', 'show', f'{rev}:fruit360/models/default.onnx'], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError): return None
    path = Path(tempfile.mkdtemp(prefix='fruit360-bench-'))/'before.onnx'
    path.write_bytes(data)
    return path


def plot_scores(known:np.ndarray, unknown:dict, openset:dict, path, title:str=''):
    "Histograms (log scale) of the novelty of known Test images, pooled non-fruit and fruit on a replaced background."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = {f'known Test ({len(known):,})': known,
              'generated non-fruit (pooled)': np.concatenate([v for k, v in unknown.items() if k != 'bg_replaced'])}
    if 'bg_replaced' in unknown: groups['fruit on a replaced background'] = unknown['bg_replaced']
    lo = max(min(float(v.min()) for v in groups.values()), 1e-4)
    bins = np.geomspace(lo, max(float(v.max()) for v in groups.values()) * 1.01, 60)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, v in groups.items(): ax.hist(np.clip(v, lo, None), bins, alpha=0.55, density=True, label=name)
    ax.axvline(openset['threshold'], color='k', ls='--', label=f"threshold {openset['threshold']:.4f}")
    if 'threshold_lenient' in openset: ax.axvline(openset['threshold_lenient'], color='k', ls=':', label=f"lenient {openset['threshold_lenient']:.4f}")
    ax.set(xscale='log', xlabel='novelty (kNN distance on pooled features)', ylabel='density', title=title)
    ax.legend(fontsize=8); fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)
    return path


def main(model=None, data=None, n:int=200, before=None, seed:int=0, plot=None) -> dict:
    from fruit360.data import check_dataset, split_items
    from fruit360.images import load_rgb
    from fruit360.infer import predict
    from fruit360.runtime import OnnxClassifier
    clf = OnnxClassifier(model)
    if not clf.openset: raise SystemExit(f'{clf.path} has no novelty output: export it with `fruit360 export` (which adds one)')
    thr, res = clf.openset['threshold'], {'model': str(clf.path), 'threshold': clf.openset['threshold'], 'n_per_set': n}
    sets = {k: [np.asarray(im) for im in v] for k, v in non_fruit(n, seed).items()}
    test = None
    if data:
        test = split_items(check_dataset(data), 'Test')
        sets['bg_replaced'] = bg_replaced(test, n, seed)
        known = novelty(clf, test)
        res['known_test'] = {'n': len(test), 'kept': float((known <= thr).mean())}
    unknown = {k: novelty(clf, v) for k, v in sets.items()}
    res['flagged'] = {k: float((v > thr).mean()) for k, v in unknown.items()}
    if data:
        res['auroc'] = {k: auroc(known, v) for k, v in unknown.items()}
        res['auroc']['pooled non-fruit'] = auroc(known, np.concatenate([v for k, v in unknown.items() if k != 'bg_replaced']))
        if plot: res['plot'] = str(plot_scores(known, unknown, clf.openset, plot, f'novelty of {clf.path.name}'))
    res['auroc_unseen_varieties'] = '0.994 (issue 11 research run, leave-8-classes-out model; not measurable on this model)'
    img = str(test[0]) if test else None
    if img is None:
        img = os.path.join(tempfile.mkdtemp(prefix='fruit360-bench-'), 'red.jpg'); Image.new('RGB', (100, 100), (180, 40, 40)).save(img)
    res['predict_p50_ms'] = {
        'after (probabilities, known, novelty)': p50(lambda: predict(img, clf)),
        'before, same session (probabilities only)': p50(lambda: clf.answer(clf.probabilities(load_rgb(img, clf.size)[None])[0]))}
    before = Path(before) if before else previous_model()
    if before is not None:
        old = OnnxClassifier(before)
        res['predict_p50_ms'][f'before, {before.name} (no novelty output)' if not old.openset else f'before, {before.name}'] = p50(lambda: predict(img, old))
    res['predict_p50_ms']['after, again'] = p50(lambda: predict(img, clf))
    return res


def report(res:dict) -> str:
    "`res` of `main` as Markdown tables."
    lines = [f"model {res['model']}, threshold {res['threshold']:.4f}, {res['n_per_set']} generated images per set"]
    if 'known_test' in res: lines.append(f"known Test images kept known: {res['known_test']['kept']:.3f} of {res['known_test']['n']:,}")
    lines += ['', '| set | AUROC vs known Test | flagged not known |', '|---|---:|---:|']
    for k, f in res['flagged'].items(): lines.append(f"| {k} | {res.get('auroc', {}).get(k, float('nan')):.4f} | {f:.3f} |")
    if 'auroc' in res: lines.append(f"| pooled non-fruit (9 sets) | {res['auroc']['pooled non-fruit']:.4f} | {np.mean([v for k, v in res['flagged'].items() if k != 'bg_replaced']):.3f} |")
    lines += ['', f"AUROC known vs unseen varieties: {res['auroc_unseen_varieties']}", '', '| predict, one 100x100 image | p50 ms |', '|---|---:|']
    lines += [f'| {k} | {v:.3f} |' for k, v in res['predict_p50_ms'].items()]
    return '\n'.join(lines)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', help='an exported .onnx model (default: the shipped one)')
    ap.add_argument('--data', default=os.environ.get('FRUIT360_DATA'), help='the Fruits-360 folder (default: $FRUIT360_DATA)')
    ap.add_argument('--n', type=int, default=200, help='generated images per set')
    ap.add_argument('--before', help="the model to time as 'before' (default: the shipped model at git HEAD)")
    ap.add_argument('--json', action='store_true', help='print JSON instead of tables')
    ap.add_argument('--plot', help='also draw the novelty scores into this PNG file (needs --data)')
    a = ap.parse_args()
    if a.plot and not a.data: ap.error('--plot needs the Test images: give --data or set $FRUIT360_DATA')
    res = main(a.model, a.data, a.n, a.before, plot=a.plot)
    print(json.dumps(res, indent=1) if a.json else report(res))

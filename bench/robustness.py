"""Corruption benchmark: accuracy of an exported model on Test frames that are noisy, blurred, badly lit, compressed or off white.

    python bench/robustness.py [--model fruit360/models/default.onnx] [--data PATH] [--per-class 20]
                               [--corruptions a,b] [--severities 1,3,5] [--seed 0] [--json OUT]

The ImageNet-C protocol (Hendrycks & Dietterich, ICLR 2019) adapted to 100x100 fruit on white: every corruption of
`PARAMS` at 5 severities is applied to the same `--per-class` Test images per class, and each cell of the table is the
accuracy of the model on them. Twin classes (byte-identical images, `check_dataset(path).twins`) count as one class: an
answer naming either twin is right for both. Prints the table, the mean per corruption, the overall mean, the means of
the `TRAIN_FAMILY` and `HELD_OUT` groups, the worst corruption at severity 3 ("moderate") and the clean accuracy.

Spatial parameters (blur radii, motion length, zoom, pixelation) are ImageNet-C's scaled from 224 to 100 pixels; noise
and photometric ones are set so that severity 3 is a moderate phone-photo fault (blur 1.5 px, 40% darker, half contrast,
mid-grey background). Every corruption is numpy/scipy/Pillow code in this file, vectorised over the batch (JPEG,
pixelation, zoom and rotation go image by image through Pillow's C code) and deterministic for a `--seed`. ImageNet-C's
own code (the `imagecorruptions` package) at ImageNet's severities, harsher on 100 px fruit, is `bench/imagenet_c.py`:
the check from outside, with code and settings this project did not choose.
"""
import argparse, json, sys, time, warnings, zlib
from pathlib import Path
import numpy as np
from PIL import Image
from scipy import ndimage, signal

SEVERITIES = (1, 2, 3, 4, 5)
MODERATE = 3  # the severity at which the worst corruption is reported

# corruption -> its parameter at severities 1..5 (see the functions of the same name below)
PARAMS = {
    # noise
    'gaussian_noise': (0.04, 0.06, 0.08, 0.12, 0.16),  # std of additive noise (values in [0, 1])
    'shot_noise':     (250, 100, 50, 25, 12),          # photons per unit intensity (Poisson)
    'impulse_noise':  (0.01, 0.02, 0.04, 0.07, 0.10),  # fraction of values set to 0 or 1 (salt and pepper)
    # blur
    'gaussian_blur':  (0.5, 1.0, 1.5, 2.0, 3.0),       # sigma in pixels
    'defocus_blur':   (1.0, 1.5, 2.0, 3.0, 4.0),       # disk radius in pixels (edges softened by sigma 0.5)
    'motion_blur':    (3, 5, 7, 10, 14),               # streak length in pixels, in a random direction per image
    'zoom_blur':      (1.04, 1.08, 1.12, 1.16, 1.22),  # largest zoom of the averaged copies (steps of 0.02)
    # photometric
    'brighten':       (0.1, 0.2, 0.3, 0.4, 0.5),       # added to the HSV value (ImageNet-C brightness)
    'darken':         (0.85, 0.7, 0.6, 0.5, 0.4),      # exposure gain (0.6: 40% darker)
    'contrast':       (0.75, 0.6, 0.5, 0.4, 0.3),      # contrast gain around the image mean (0.5: half)
    'saturate':       (1.5, 2.0, 3.0, 5.0, 8.0),       # saturation gain
    'colour_cast':    (0.05, 0.1, 0.15, 0.2, 0.3),     # white balance off: length of the channels' log gains (0.15: red 1.11x, blue 0.90x)
    # digital
    'jpeg':           (25, 18, 15, 10, 7),             # JPEG quality (ImageNet-C)
    'pixelate':       (0.75, 0.6, 0.5, 0.4, 0.3),      # box-downscaled to this fraction of the side, then box-upscaled
    'rotate':         (10, 20, 30, 40, 45),            # degrees, random sign, white corners
    # background: the fruit (near-white pixels joined to the border are background) composited on ...
    'bg_grey':        (0.85, 0.7, 0.5, 0.3, 0.1),      # ... plain grey of this level
    'bg_colour':      (1, 2, 3, 4, 5),                 # ... a plain colour of random hue, `BG_SAT`/`BG_VAL` of the severity
    'bg_gradient':    (1, 2, 3, 4, 5),                 # ... a linear ramp between two such colours, random direction
    'bg_noise':       (1, 2, 3, 4, 5),                 # ... a blotchy texture (smoothed noise) between two such colours
    'bg_stripes':     (1, 2, 3, 4, 5),                 # ... stripes of two such colours, random angle and period 6-16 px
    'bg_checker':     (1, 2, 3, 4, 5),                 # ... a checkerboard of two such colours, random angle and cell 5-12 px
}
BG_SAT = (0.15, 0.3, 0.45, 0.6, 0.8)  # saturation of background colours at severities 1..5
BG_VAL = (0.9, 0.8, 0.7, 0.55, 0.4)   # their HSV value
WHITE = 225 / 255  # a pixel with every channel at least this is white (the complement of `crop_to_fruit`'s ink)
PALE = 180 / 255   # pale pixels next to the white background are its anti-aliased rim

# One place for the split: a training recipe may imitate TRAIN_FAMILY (at other severities and with other code);
# HELD_OUT corruption types must never be used in training, so their numbers measure generalisation.
# colour_cast was held out from its addition until the recipe gained a gain per channel (the `colour` fault, 2026-12-04).
HELD_OUT = ('impulse_noise', 'motion_blur', 'zoom_blur', 'pixelate', 'bg_noise', 'bg_stripes', 'bg_checker')
TRAIN_FAMILY = tuple(c for c in PARAMS if c not in HELD_OUT)


# ---------------------------------------------------------------- helpers

def _grid(x):
    "Row and column coordinates (H,W) of the pixels of `x`, and the centre."
    h, w = x.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx, (h - 1) / 2, (w - 1) / 2


def _hsv_to_rgb(h, s, v):
    "RGB (...,3) of HSV arrays in [0, 1]."
    k = (np.array([5, 3, 1]) + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def _luma(x): return x @ np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


# ---------------------------------------------------------------- corruptions: f(x (N,H,W,3) float in [0,1], p, rng)

def gaussian_noise(x, std, rng): return x + rng.normal(0, std, x.shape).astype(np.float32)
def shot_noise(x, photons, rng): return rng.poisson(x * photons).astype(np.float32) / photons

def impulse_noise(x, amount, rng):
    "Salt and pepper: each value independently 0 or 1 with probability `amount`."
    u = rng.random(x.shape, dtype=np.float32)
    return np.where(u < amount / 2, 0., np.where(u < amount, 1., x))

def gaussian_blur(x, sigma, rng): return ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode='nearest')

def _convolve(x, k):
    "`x` convolved with the 2-D kernel `k` (odd sides), the edge repeated."
    r = k.shape[0] // 2
    pad = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode='edge')
    return signal.fftconvolve(pad, k[None, :, :, None], mode='valid', axes=(1, 2))

def defocus_blur(x, radius, rng):
    "Convolution with a disk of `radius` px, its rim softened (ImageNet-C's disk kernel)."
    r = int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    k = ndimage.gaussian_filter((yy ** 2 + xx ** 2 <= radius ** 2).astype(np.float32), 0.5)
    return _convolve(x, k / k.sum())

def _line_kernel(length, angle):
    "A kernel that averages along a centred streak of `length` px at `angle` radians (bilinear splats)."
    r = int(np.ceil(length / 2)) + 1
    k = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * int(length)):
        y, x = r + t * np.sin(angle), r + t * np.cos(angle)
        y0, x0 = int(np.floor(y)), int(np.floor(x)); wy, wx = y - y0, x - x0
        k[y0:y0 + 2, x0:x0 + 2] += np.array([[(1 - wy) * (1 - wx), (1 - wy) * wx], [wy * (1 - wx), wy * wx]])
    return k / k.sum()

MOTION_DIRECTIONS = 12  # motion streaks point one of this many directions, 180/12 = 15 degrees apart

def motion_blur(x, length, rng):
    "Averaged along a centred streak of `length` px, in a random direction per image."
    d = rng.integers(0, MOTION_DIRECTIONS, len(x))
    out = np.empty_like(x)
    for i in np.unique(d): out[d == i] = _convolve(x[d == i], _line_kernel(length, np.pi * i / MOTION_DIRECTIONS))
    return out

def zoom_blur(x, zmax, rng):
    "The average of the image and its centre zoomed by 1.02, 1.04, ... up to `zmax`."
    h, w = x.shape[1:3]
    def zoomed(z):
        box = ((w - w / z) / 2, (h - h / z) / 2, (w + w / z) / 2, (h + h / z) / 2)
        return _per_image(x, lambda im: im.resize((w, h), Image.Resampling.BILINEAR, box=box))
    zs = np.arange(1.02, zmax + 1e-6, 0.02)
    return (x + sum(zoomed(z) for z in zs)) / (len(zs) + 1)

def brighten(x, add, rng):
    "HSV value raised by `add`, hue and saturation kept (so RGB scales with the value)."
    v = x.max(-1, keepdims=True)
    return x * np.minimum(v + add, 1) / np.maximum(v, 1e-6)

def darken(x, gain, rng): return x * gain

def contrast(x, gain, rng):
    m = x.mean((1, 2, 3), keepdims=True)
    return (x - m) * gain + m

def colour_cast(x, length, rng):
    "Each channel times its own gain, as under a white balance gone wrong (the white background tinted too): log gains of `length` in a random direction among those summing to 0, which keep the gains' product (about the brightness)."
    warm, green = np.array([1, 0, -1]) / np.sqrt(2), np.array([-1, 2, -1]) / np.sqrt(6)  # the plane of log gains that sum to 0: red-blue, green-magenta
    angle = rng.uniform(0, 2 * np.pi, len(x))[:, None]
    return x * np.exp(length * (np.cos(angle) * warm + np.sin(angle) * green)).astype(np.float32)[:, None, None, :]

def saturate(x, gain, rng):
    g = _luma(x)[..., None]
    return g + (x - g) * gain

def _per_image(x, f):
    "`f(PIL image) -> PIL image` applied to each image of the batch, in order."
    u8 = _to_uint8(x)
    return np.stack([np.asarray(f(Image.fromarray(im)), dtype=np.float32) / 255 for im in u8])

def jpeg(x, quality, rng):
    import io
    def one(im):
        buf = io.BytesIO(); im.save(buf, 'JPEG', quality=int(quality)); return Image.open(buf).convert('RGB')
    return _per_image(x, one)

def pixelate(x, frac, rng):
    h, w = x.shape[1:3]
    size = (max(1, round(w * frac)), max(1, round(h * frac)))
    return _per_image(x, lambda im: im.resize(size, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX))

def rotate(x, degrees, rng):
    "Turned by `degrees` (random sign per image) about the centre, corners filled white."
    signs = iter(rng.choice((-1, 1), len(x)))
    return _per_image(x, lambda im: im.rotate(degrees * next(signs), Image.Resampling.BILINEAR, fillcolor=(255, 255, 255)))


# ---------------------------------------------------------------- backgrounds

def fruit_alpha(x):
    "Opacity (N,H,W,1) of the fruit: 0 on near-white pixels joined to the border (and their pale rim), 1 elsewhere, soft edge."
    white = (x >= WHITE).all(-1)
    seed = np.zeros_like(white)
    seed[:, [0, -1], :] = True; seed[:, :, [0, -1]] = True
    cross = ndimage.generate_binary_structure(2, 1)[None]
    bg = ndimage.binary_propagation(seed & white, structure=cross, mask=white)
    bg = ndimage.binary_opening(bg, structure=np.ones((1, 2, 2), bool)) | (bg & seed)  # drop 1-px white specks
    bg = ndimage.binary_dilation(bg, cross, iterations=2, mask=(x >= PALE).all(-1))  # and the pale anti-aliased rim
    fruit = ~ndimage.binary_dilation(bg, cross)  # shave one more pixel
    return ndimage.gaussian_filter(fruit.astype(np.float32), (0, 0.6, 0.6))[..., None]

def _colours(rng, n, severity):
    "`n` random-hue RGB colours (n,3) of the severity's saturation and value."
    i = int(severity) - 1
    return _hsv_to_rgb(rng.random(n), np.full(n, BG_SAT[i]), np.full(n, BG_VAL[i])).astype(np.float32)

def _pattern(kind, x, rng):
    "A per-image field (N,H,W) in [0, 1] that mixes two background colours: ramp, smoothed noise, stripes, checker."
    n = len(x)
    yy, xx, cy, cx = _grid(x)
    a = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    u = np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy)
    v = -np.sin(a) * (xx - cx) + np.cos(a) * (yy - cy)
    if kind == 'gradient': return (u - u.min((1, 2), keepdims=True)) / np.ptp(u, (1, 2), keepdims=True)
    if kind == 'noise':
        f = ndimage.gaussian_filter(rng.random(x.shape[:3], dtype=np.float32), (0, 3, 3))
        f -= f.min((1, 2), keepdims=True)
        return f / np.maximum(f.max((1, 2), keepdims=True), 1e-6)
    if kind == 'stripes':
        period = rng.uniform(6, 16, n)[:, None, None]
        return ((u / period + rng.random(n)[:, None, None]) % 1 < 0.5).astype(np.float32)
    cell = rng.uniform(5, 12, n)[:, None, None]
    return ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)

def _composite(x, bg):
    al = fruit_alpha(x)
    return al * x + (1 - al) * bg

def bg_grey(x, level, rng): return _composite(x, np.float32(level))
def bg_colour(x, sev, rng): return _composite(x, _colours(rng, len(x), sev)[:, None, None, :])

def _two_colour(kind):
    def f(x, sev, rng):
        c1, c2 = _colours(rng, len(x), sev), _colours(rng, len(x), sev)
        m = _pattern(kind, x, rng)[..., None]
        return _composite(x, c1[:, None, None] * (1 - m) + c2[:, None, None] * m)
    f.__name__ = f'bg_{kind}'
    return f

bg_gradient, bg_noise, bg_stripes, bg_checker = (_two_colour(k) for k in ('gradient', 'noise', 'stripes', 'checker'))
CORRUPTIONS = {name: globals()[name] for name in PARAMS}


# ---------------------------------------------------------------- benchmark

def _to_uint8(x): return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)

def corrupt(images, name:str, severity:int, seed:int=0, chunk:int=256) -> np.ndarray:
    "The uint8 batch `images` (N,H,W,3) with corruption `name` at `severity` (1-5); the same for the same `seed`."
    if name not in CORRUPTIONS: raise ValueError(f"unknown corruption '{name}': choose from {', '.join(PARAMS)}")
    if severity not in SEVERITIES: raise ValueError(f"severity must be one of 1-5, not {severity!r}")
    p, f = PARAMS[name][severity - 1], CORRUPTIONS[name]
    out = []
    for k in range(0, len(images), chunk):  # chunks bound the memory; the random draws depend on the chunk, not its neighbours
        rng = np.random.default_rng([seed, zlib.crc32(name.encode()), severity, k])
        out.append(_to_uint8(f(images[k:k + chunk].astype(np.float32) / 255, p, rng)))
    return np.concatenate(out)


def twin_groups(classes:list, twins) -> dict[str, str]:
    "Class -> the name of its twin group (its classes joined by ' = '), for the classes that have a twin (grouped by `fruit360.data.twin_groups`)."
    from fruit360.data import twin_groups as group_numbers
    members = {}
    for c, g in zip(classes, group_numbers(list(classes), twins)): members.setdefault(g, []).append(c)
    return {c: ' = '.join(sorted(m)) for m in members.values() if len(m) > 1 for c in m}


def accuracy(predicted, labels, groups:dict) -> float:
    "Share of `predicted` class names equal to `labels`, twins counted as one class."
    g = lambda c: groups.get(c, c)
    return float(np.mean([g(p) == g(t) for p, t in zip(predicted, labels)]))


def run_benchmark(classify, images, labels, groups:dict, corruptions=tuple(PARAMS), severities=SEVERITIES,
                  seed:int=0, log=None) -> dict:
    "Accuracy of `classify` (uint8 batch -> class names) on `images` clean and under each corruption and severity."
    res = {'clean': accuracy(classify(images), labels, groups), 'accuracy': {}}
    for name in corruptions:
        res['accuracy'][name] = {s: accuracy(classify(corrupt(images, name, s, seed)), labels, groups) for s in severities}
        if log: log(f"  {name:<15} " + ' '.join(f'{a:.3f}' for a in res['accuracy'][name].values()))
    return summarise(res)


def _mean(xs): xs = list(xs); return float(np.mean(xs)) if xs else None

def summarise(res:dict) -> dict:
    "`res` with the mean per corruption, overall, per group, and the worst corruption at `MODERATE` severity."
    acc = res['accuracy']
    res['mean'] = {c: _mean(a.values()) for c, a in acc.items()}
    res['overall_mean'] = _mean(res['mean'].values())
    res['train_family_mean'] = _mean(m for c, m in res['mean'].items() if c in TRAIN_FAMILY)
    res['held_out_mean'] = _mean(m for c, m in res['mean'].items() if c in HELD_OUT)
    moderate = {c: a[MODERATE] for c, a in acc.items() if MODERATE in a}
    worst = min(moderate, key=moderate.get) if moderate else None
    res['worst_moderate'] = {'corruption': worst, 'accuracy': moderate[worst]} if worst else None
    res['moderate_mean'] = _mean(moderate.values())
    return res


def format_table(res:dict, severities) -> str:
    "The result as a text table: one row per corruption, a column per severity and the mean; groups apart."
    head = f"{'corruption':<16}" + ''.join(f'  s{s}   ' for s in severities) + ' mean'
    lines = [head]
    for title, names in (('train family', TRAIN_FAMILY), ('held out (never train on these)', HELD_OUT)):
        rows = [c for c in res['accuracy'] if c in names]
        if not rows: continue
        lines.append(f'-- {title}')
        for c in rows:
            lines.append(f'{c:<16}' + ''.join(f' {res["accuracy"][c][s]:.3f} ' for s in severities) + f' {res["mean"][c]:.3f}')
    f = lambda v: '-' if v is None else f'{v:.3f}'
    w = res['worst_moderate']
    lines += [f'clean accuracy          {f(res["clean"])}',
              f'mean over corruptions   {f(res["overall_mean"])}  (train family {f(res["train_family_mean"])}, '
              f'held out {f(res["held_out_mean"])})',
              f'mean at severity {MODERATE}       {f(res["moderate_mean"])}',
              f'worst at severity {MODERATE}      ' + (f'{w["corruption"]} {w["accuracy"]:.3f}' if w else '-')]
    return '\n'.join(lines)


def load_test(data, per_class:int):
    "The first-come uint8 Test images (`per_class` per class, evenly spaced), their labels, and the twin groups."
    from fruit360.data import check_dataset, split_items
    from fruit360.images import load_rgb, IMG_SIZE
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the twins warning: they are handled here
        summary = check_dataset(data)
    files = split_items(summary, 'Test', per_class)
    images = np.stack([load_rgb(f, IMG_SIZE) for f in files])
    return images, [f.parent.name for f in files], twin_groups(summary.classes, summary.twins)


def onnx_classifier(model):
    "uint8 batch -> predicted class names, through `fruit360.infer.predict_batch` and the exported `model` (a file or `OnnxClassifier`)."
    from fruit360.infer import predict_batch
    return lambda images: [a['class'] for a in predict_batch(list(images), model=model, topk=1, bs=256)]


def open_model(model):
    "The exported `model` (an .onnx file, or None: the shipped one), opened once for every batch."
    from fruit360.runtime import OnnxClassifier
    if model is not None and (Path(model).suffix.lower() != '.onnx' or not Path(model).is_file()):
        raise ValueError(f"--model '{model}' is not an .onnx file: pass a model exported with `fruit360 export`")
    return OnnxClassifier(model)


def check_classes(classifier, labels:list, data):
    "Refuse Test images of `data` (their `labels`) with a class the opened model does not know."
    if unknown := sorted(set(labels) - set(classifier.classes)):
        raise ValueError(f"{data} holds {len(unknown)} classes the model {classifier.path} does not know ({', '.join(unknown[:3])}...): "
                         'pass the data the model was trained on, or a model trained on this data with --model')


def _names(s:str) -> list[str]:
    names = [n.strip() for n in s.split(',') if n.strip()]
    bad = [n for n in names if n not in PARAMS]
    if bad or not names: raise ValueError(f"unknown corruption(s) {', '.join(bad) or repr(s)}: choose from {', '.join(PARAMS)}")
    return names

def _severities(s:str) -> list[int]:
    try: sev = sorted({int(v) for v in s.split(',') if v.strip()})
    except ValueError: sev = []
    if not sev or any(v not in SEVERITIES for v in sev): raise ValueError(f"--severities takes numbers 1-5 separated by commas, not {s!r}")
    return sev


def main(argv=None):
    import os
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default=None, help='an exported .onnx model (default: the shipped one)')
    p.add_argument('--data', default=None, help='Fruits-360 folder (default: $FRUIT360_DATA, else the cached download)')
    p.add_argument('--per-class', type=int, default=20, help='Test images per class (default 20)')
    p.add_argument('--corruptions', default=','.join(PARAMS), help='comma-separated corruptions (default: all)')
    p.add_argument('--severities', default='1,2,3,4,5', help='comma-separated severities 1-5 (default: all)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='also write the results to this JSON file')
    a = p.parse_args(argv)
    from fruit360.data import find_data
    a.data = find_data(a.data)
    try:
        names, sev = _names(a.corruptions), _severities(a.severities)
        if a.per_class < 1: raise ValueError(f'--per-class must be at least 1, not {a.per_class}')
        model, t0 = open_model(a.model), time.perf_counter()
        images, labels, groups = load_test(a.data, a.per_class)
        check_classes(model, labels, a.data)
        classify = onnx_classifier(model)
        print(f'{len(images)} Test images ({a.per_class} per class) of {a.data}; model {a.model or "shipped default"}; '
              f'twins as one: {sorted(set(groups.values())) or "none"}', flush=True)
        res = run_benchmark(classify, images, labels, groups, names, sev, a.seed, log=lambda s: print(s, flush=True))
        res.update(model=str(a.model or 'default'), data=str(a.data), n_images=len(images), per_class=a.per_class,
                   seed=a.seed, params={c: PARAMS[c] for c in names}, held_out=[c for c in names if c in HELD_OUT],
                   seconds=round(time.perf_counter() - t0, 1))
        print(format_table(res, sev))
        print(f'{res["seconds"]:.0f} s')
        if a.json: Path(a.json).write_text(json.dumps(res, indent=1) + '\n')
    except (ValueError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()

"""ImageNet-C's own corruption code, at ImageNet's severities, on Test frames: the check from outside the recipe.

    pip install scikit-image opencv-python-headless && pip install --no-deps imagecorruptions==1.1.2   (`make install` does)
    python -m bench.imagenet_c [--model A.onnx --model B.onnx ...] [--data PATH] [--per-class 6]
                               [--corruptions a,b] [--severities 1,3,5] [--seed 0] [--json OUT]

`bench/robustness.py` measures fruit360's own corruptions, written for 100 px fruit on white. Training draws from a
family like thirteen of them, so its mean says how well the recipe learned what it was shown, and its eight held-out
types how far that carries. This script asks the same of code and settings the project never chose: the reference
implementation of Hendrycks and Dietterich (ICLR 2019) as the `imagecorruptions` package ships it, its 19 corruptions
at its own 5 severities. Those are set for 224 px ImageNet photos, so on a 100 px fruit a blur or a motion streak is
about twice as long relative to the fruit as at the same severity in `robustness.py`, and the noise is stronger. Seven
types have no counterpart in either of fruit360's groups (glass blur, elastic transform, speckle noise and the weather:
snow, frost, fog, spatter); each corruption is reported with the group of its nearest fruit360 type (`GROUP`).

Every model given is measured on the same corrupted images in one run (the shipped one by default), so models compare
side by side. Twin classes count as one, as in `robustness.py`, whose Test selection, classifier and accuracy this
reuses. `imagecorruptions` 1.1.2 (2020, its last release) does not import with today's libraries; `imagenet_c` bridges
the three things it needs that they removed, in this process only: `pkg_resources` (setuptools 81) to find its frost
pictures, `skimage.filters.gaussian(multichannel=True)` (scikit-image 0.19; now `channel_axis=-1`) and `np.float_`
(NumPy 2; `np.float64`). It draws from NumPy's global random state, which is seeded for each corruption and severity,
and its salt-and-pepper noise from scikit-image's, which the bridge seeds from that state: the same `--seed` gives the
same images. Its metadata asks for the desktop build of OpenCV (it needs libGL), hence `--no-deps` and the headless one.
"""
import argparse, importlib, json, sys, time, types, warnings, zlib
from pathlib import Path
import numpy as np

if __package__: from .robustness import MODERATE, SEVERITIES, _mean, _severities, accuracy, check_classes, load_test, onnx_classifier, open_model
else: from robustness import MODERATE, SEVERITIES, _mean, _severities, accuracy, check_classes, load_test, onnx_classifier, open_model

# each ImageNet-C corruption, in the package's order (its last four are ImageNet-C's validation corruptions), ->
# the fruit360 group of its nearest type in `robustness.py` (`TRAIN_FAMILY`, `HELD_OUT`), or none
GROUP = {'gaussian_noise': 'train family', 'shot_noise': 'train family', 'impulse_noise': 'held out', 'defocus_blur': 'train family',
         'glass_blur': 'no counterpart', 'motion_blur': 'held out', 'zoom_blur': 'held out', 'snow': 'no counterpart',
         'frost': 'no counterpart', 'fog': 'no counterpart', 'brightness': 'train family', 'contrast': 'train family',
         'elastic_transform': 'no counterpart', 'pixelate': 'held out', 'jpeg_compression': 'train family',
         'speckle_noise': 'no counterpart', 'gaussian_blur': 'train family', 'spatter': 'no counterpart', 'saturate': 'train family'}
INSTALL = 'pip install scikit-image opencv-python-headless && pip install --no-deps imagecorruptions==1.1.2'


def imagenet_c():
    "The `imagecorruptions` package, imported with the bridges to today's setuptools, scikit-image and NumPy it needs."
    if 'imagecorruptions' in sys.modules: return sys.modules['imagecorruptions']
    try: import skimage.filters, skimage.util, cv2  # noqa: F401 (its dependencies, checked first for a clear message)
    except ImportError as e: raise ValueError(f'bench/imagenet_c.py needs {e.name}: {INSTALL}') from None
    if importlib.util.find_spec('pkg_resources') is None and importlib.util.find_spec('imagecorruptions') is not None:
        where = Path(importlib.util.find_spec('imagecorruptions').origin).parent
        sys.modules['pkg_resources'] = types.SimpleNamespace(resource_filename=lambda package, name: str(where/name))
    if not hasattr(np, 'float_'): np.float_ = np.float64
    gaussian, noise = skimage.filters.gaussian, skimage.util.random_noise
    def gaussian_channels(image, *args, multichannel=None, **kw):
        return gaussian(image, *args, **({'channel_axis': -1} if multichannel else {}), **kw)
    def seeded_noise(image, *args, rng=None, **kw):  # from NumPy's global state, which `corrupt` seeds
        return noise(image, *args, rng=np.random.randint(2**31) if rng is None else rng, **kw)
    skimage.filters.gaussian, skimage.util.random_noise = gaussian_channels, seeded_noise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return importlib.import_module('imagecorruptions')
    except ImportError: raise ValueError(f'bench/imagenet_c.py needs imagecorruptions: {INSTALL}') from None


def names(s:str|None=None) -> list[str]:
    "The corruptions named in the comma-separated `s` (all of ImageNet-C's for None), each checked."
    known = list(imagenet_c().get_corruption_names('all'))
    if s is None: return known
    given = [n.strip() for n in s.split(',') if n.strip()]
    if bad := [n for n in given if n not in known] or ([] if given else [repr(s)]):
        raise ValueError(f"unknown ImageNet-C corruption(s) {', '.join(bad)}: choose from {', '.join(known)}")
    return given


def corrupt(images:np.ndarray, name:str, severity:int, seed:int=0) -> np.ndarray:
    "The uint8 batch `images` (N,H,W,3) with ImageNet-C's corruption `name` at `severity` (1-5); the same for the same `seed`."
    ic = imagenet_c()
    if name not in ic.get_corruption_names('all'): names(name)  # raises, naming the choices
    if severity not in SEVERITIES: raise ValueError(f'severity must be one of 1-5, not {severity!r}')
    np.random.seed([seed, zlib.crc32(name.encode()), severity])
    h, w = images.shape[1:3]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return np.stack([np.clip(np.asarray(ic.corrupt(im, severity=severity, corruption_name=name), np.float32), 0, 255)
                         .round().astype(np.uint8)[:h, :w] for im in images])


def summarise(acc:dict, clean:float) -> dict:
    "Means per corruption, overall, per group and at `MODERATE` severity, and the worst corruption there, of `acc` (name -> severity -> accuracy)."
    mean = {c: _mean(a.values()) for c, a in acc.items()}
    moderate = {c: a[MODERATE] for c, a in acc.items() if MODERATE in a}
    worst = min(moderate, key=moderate.get) if moderate else None
    return dict(clean=clean, accuracy=acc, mean=mean, overall_mean=_mean(mean.values()),
                group_mean={g: _mean(m for c, m in mean.items() if GROUP[c] == g) for g in dict.fromkeys(GROUP.values())},
                moderate_mean=_mean(moderate.values()), worst_moderate={'corruption': worst, 'accuracy': moderate[worst]} if worst else None)


def format_table(results:dict, severities) -> str:
    "One block per model: a row per corruption (its group beside it), a column per severity and the mean; then the means."
    f = lambda v: '-' if v is None else f'{v:.3f}'
    lines = []
    for model, r in results.items():
        lines += [f'== {model}', f"{'corruption':<18}{'group':<16}" + ''.join(f'  s{s}   ' for s in severities) + ' mean']
        lines += [f'{c:<18}{GROUP[c]:<16}' + ''.join(f' {a[s]:.3f} ' for s in severities) + f' {r["mean"][c]:.3f}' for c, a in r['accuracy'].items()]
        w = r['worst_moderate']
        lines += [f'clean accuracy          {f(r["clean"])}',
                  f'mean over corruptions   {f(r["overall_mean"])}  (' + ', '.join(f'{g} {f(m)}' for g, m in r['group_mean'].items() if m is not None) + ')',
                  f'mean at severity {MODERATE}       {f(r["moderate_mean"])}',
                  f'worst at severity {MODERATE}      ' + (f'{w["corruption"]} {w["accuracy"]:.3f}' if w else '-')]
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', action='append', default=None, help='an exported .onnx model; repeat to compare several (default: the shipped one)')
    p.add_argument('--data', default=None, help='Fruits-360 folder (default: $FRUIT360_DATA, else the cached download)')
    p.add_argument('--per-class', type=int, default=6, help='Test images per class (default 6)')
    p.add_argument('--corruptions', default=None, help="comma-separated ImageNet-C corruptions (default: all 19)")
    p.add_argument('--severities', default='1,2,3,4,5', help='comma-separated severities 1-5 (default: all)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='also write the results to this JSON file')
    a = p.parse_args(argv)
    from fruit360.data import find_data
    try:
        todo, sev = names(a.corruptions), _severities(a.severities)
        if a.per_class < 1: raise ValueError(f'--per-class must be at least 1, not {a.per_class}')
        opened, data, t0 = {str(m or 'shipped default'): open_model(m) for m in (a.model or [None])}, find_data(a.data), time.perf_counter()
        images, labels, groups = load_test(data, a.per_class)
        for model in opened.values(): check_classes(model, labels, data)
        models = {m: onnx_classifier(model) for m, model in opened.items()}
        print(f'{len(images)} Test images ({a.per_class} per class) of {data}; ImageNet-C (imagecorruptions) at its own severities; '
              f'twins as one: {sorted(set(groups.values())) or "none"}', flush=True)
        clean = {m: accuracy(classify(images), labels, groups) for m, classify in models.items()}
        acc = {m: {} for m in models}
        for name in todo:
            for s in sev:
                x = corrupt(images, name, s, a.seed)  # once, for every model
                for m, classify in models.items(): acc[m].setdefault(name, {})[s] = accuracy(classify(x), labels, groups)
            print(f'  {name:<18}' + ' | '.join(' '.join(f'{acc[m][name][s]:.3f}' for s in sev) for m in models), flush=True)
        results = {m: summarise(acc[m], clean[m]) for m in models}
        print(format_table(results, sev))
        seconds = round(time.perf_counter() - t0, 1)
        print(f'{seconds:.0f} s')
        if a.json: Path(a.json).write_text(json.dumps(dict(models=results, data=str(data), n_images=len(images), per_class=a.per_class,
                                                           seed=a.seed, severities=sev, group=GROUP, seconds=seconds), indent=1) + '\n')
    except (ValueError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()

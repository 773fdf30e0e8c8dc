"""Pack what the GPU check needs beyond the GPU machine's image into one ignored folder: wheels and a sample of Fruits-360.

    python bench/gpu_pack.py [--out .gpu] [--data PATH] [--train 80] [--test 20] [--limit-mib 60]

Run it where the package index is reachable (`make gpu-pack`); `bench/gpu_check.py` then runs offline on the GPU
machine with the folder beside the checkout. It writes `OUT/wheels/` (pure-Python wheels for Python 3.12, pinned to
the versions of this environment), `OUT/sample/` (`--train` Training and `--test` Test images per class, evenly
spaced, from `--data`, else `$FRUIT360_DATA`) and `OUT/PACK.json`, prints what the upload weighs (the checkout that
travels plus OUT) and refuses, before writing anything, when that exceeds `--limit-mib`.
"""
import argparse, json, os, re, shutil, subprocess, sys, zipfile
from importlib import metadata
from pathlib import Path
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
IMAGE_LIST = Path(__file__).with_name('gpu_image.txt')
# What fruit360's training imports that the GPU image lacks: fastai and what its imports pull in.
WHEELS = ['fastai', 'fastcore', 'fasttransform', 'fastprogress', 'fastdownload', 'plum-dispatch', 'beartype',
          'python-fasthtml', 'starlette', 'itsdangerous', 'python-multipart']
# Requirements of those wheels that fruit360 never imports, so they stay behind (the CPU dry run proves it).
NOT_IMPORTED = {'spacy': 'fastai.text only', 'uvicorn': 'python-fasthtml serving',
                'httpx2': 'python-fasthtml client', 'oauthlib': 'python-fasthtml OAuth',
                'beautifulsoup4': 'python-fasthtml HTML parsing'}
TARGET_ENV = dict(python_version='3.12', python_full_version='3.12.3', sys_platform='linux', platform_system='Linux',
                  platform_machine='x86_64', os_name='posix', implementation_name='cpython', extra='')
MIB = 1 << 20


def norm(name: str) -> str:
    "The normalised form of a distribution name (PEP 503)."
    return re.sub(r'[-_.]+', '-', name).lower()


def image_packages() -> set:
    "The distributions the GPU image already has (`bench/gpu_image.txt`)."
    return {norm(w) for line in IMAGE_LIST.read_text().splitlines() if not line.startswith('#') for w in line.split()}


def pins() -> list:
    "`NAME==VERSION` of each of `WHEELS`, at this environment's version."
    try: return [f'{n}=={metadata.version(n)}' for n in WHEELS]
    except metadata.PackageNotFoundError as e:
        sys.exit(f'gpu-pack: {e.name} is not installed here: run make install first')


def cached_wheel(cache: Path, pin: str):
    "The wheel of `pin` in `cache`, if it is there."
    name, version = pin.split('==')
    stem = f"{norm(name).replace('-', '_')}-{version}-"
    return next((f for f in sorted(cache.glob('*.whl')) if f.name.lower().startswith(stem)), None)


def fetch_wheels(cache: Path) -> list:
    "The wheels of `pins()`, downloaded into `cache` once (pure-Python for Python 3.12), as paths."
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pins() if cached_wheel(cache, p) is None]
    if missing:
        cmd = [sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:', '--python-version', '3.12',
               '--platform', 'any', '-d', str(cache), *missing]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode: sys.exit(f'gpu-pack: pip could not download {" ".join(missing)}: {res.stderr.strip().splitlines()[-1:]}; '
                                    'check the connection to the package index')
    return [cached_wheel(cache, p) for p in pins()]


def requirements(wheel: Path) -> list:
    "The distributions that `wheel` requires on the GPU machine (Python 3.12, Linux), extras left out."
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
        lines = z.read(meta).decode().splitlines()
    reqs = [Requirement(l.split(':', 1)[1].strip()) for l in lines if l.startswith('Requires-Dist:')]
    return [norm(r.name) for r in reqs if r.marker is None or r.marker.evaluate(TARGET_ENV)]


def check_requirements(wheels: list) -> list:
    "Refuse a requirement that is neither carried, in the GPU image nor known to stay unimported; list the unimported."
    have, carried, left = image_packages(), {norm(n) for n in WHEELS}, []
    for w in wheels:
        for r in requirements(w):
            if r in have or r in carried: continue
            if r not in NOT_IMPORTED:
                sys.exit(f'gpu-pack: {w.name} requires {r}, which neither the GPU image (bench/gpu_image.txt) nor the pack has: '
                         'add it to WHEELS in bench/gpu_pack.py')
            left.append(f'{r} ({NOT_IMPORTED[r]})')
    return sorted(set(left))


def sample_files(data: Path, n_train: int, n_test: int) -> list:
    "(source, path under the sample) of `n_train` Training and `n_test` Test images per class of the dataset `data`."
    from fruit360.data import SPLITS, check_layout, subsample
    layout = check_layout(data)
    return [(f, Path(split)/cls/f.name) for split, n in zip(SPLITS, (n_train, n_test))
            for cls, files in layout[split].items() for f in subsample([f for f in files if not f.is_symlink()], n)]


def checkout_bytes() -> int:
    "Bytes of the checkout that travels to the GPU machine: tracked files and untracked files git does not ignore."
    res = subprocess.run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True)
    if res.returncode: sys.exit(f'gpu-pack: git could not list the checkout at {ROOT}: {res.stderr.decode().strip()}')
    return sum((ROOT/p).stat().st_size for p in res.stdout.decode().split('\0') if p and (ROOT/p).is_file())


def prepare_out(out: Path):
    "Make `out` ready to fill: new, empty, or an earlier pack (whose wheels and sample are replaced)."
    if out.exists() and any(out.iterdir()) and not (out/'PACK.json').is_file():
        sys.exit(f"gpu-pack: '{out}' holds files that no earlier pack wrote: choose another --out")
    for sub in ('wheels', 'sample'): shutil.rmtree(out/sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=str(ROOT/'.gpu'), help='folder to fill (ignored by git)')
    p.add_argument('--data', default=None, help='Fruits-360 folder (default: $FRUIT360_DATA, else the cached download)')
    p.add_argument('--train', type=int, default=80, help='Training images per class')
    p.add_argument('--test', type=int, default=20, help='Test images per class')
    p.add_argument('--limit-mib', type=float, default=60, help='refuse when checkout + pack exceed this')
    p.add_argument('--wheel-cache', default=None, help='where downloaded wheels are kept (default: the fruit360 cache)')
    a = p.parse_args()
    from fruit360.images import cache_dir
    out, limit = Path(a.out).resolve(), a.limit_mib * MIB
    wheels = fetch_wheels(Path(a.wheel_cache) if a.wheel_cache else cache_dir()/'gpu-wheels')
    unimported = check_requirements(wheels)
    sizes = dict(checkout=checkout_bytes(), wheels=sum(w.stat().st_size for w in wheels))
    if sum(sizes.values()) > limit:  # before reading any data
        sys.exit(f"gpu-pack: the checkout ({sizes['checkout'] / MIB:.1f} MiB) and the wheels ({sizes['wheels'] / MIB:.1f} MiB) "
                 f"alone exceed the limit of {a.limit_mib:g} MiB: make the checkout smaller")
    from fruit360.data import find_data
    try: data = find_data(a.data); files = sample_files(data, a.train, a.test)
    except (OSError, ValueError) as e: sys.exit(f'gpu-pack: {e}')
    sizes['sample'] = sum(f.stat().st_size for f, _ in files)
    total = sum(sizes.values())
    print(f"gpu-pack: checkout {sizes['checkout'] / MIB:.1f} MiB + wheels {sizes['wheels'] / MIB:.1f} MiB ({len(wheels)}) + "
          f"sample {sizes['sample'] / MIB:.1f} MiB ({len(files):,} images) = {total / MIB:.1f} MiB to upload "
          f"(limit {a.limit_mib:g} MiB)")
    if total > limit:
        sys.exit(f'gpu-pack: {total / MIB:.1f} MiB exceeds the limit of {a.limit_mib:g} MiB: pack fewer images (--train, --test)')
    prepare_out(out)
    (out/'wheels').mkdir()
    for w in wheels: shutil.copy2(w, out/'wheels'/w.name)
    for src, rel in files:
        (out/'sample'/rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out/'sample'/rel)
    (out/'PACK.json').write_text(json.dumps(dict(wheels=[w.name for w in wheels], not_carried=unimported, data=str(data),
        train_per_class=a.train, test_per_class=a.test, n_images=len(files), bytes=sizes), indent=1))
    print(f"gpu-pack: wrote {out} (left behind, never imported: {', '.join(unimported) or 'nothing'})")


if __name__ == '__main__': main()

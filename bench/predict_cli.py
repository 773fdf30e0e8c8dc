"""`fruit360 predict DIR --out f.csv` throughput vs in-process `predict_batch` on the same files, in the same run.

    FRUIT360_DATA=PATH python bench/predict_cli.py [--data PATH] [--per-class 45] [--repeats 3]

Links `--per-class` images of every class of the Test split of `--data` (default `$FRUIT360_DATA`) into a temporary
folder (symlinks: no image is copied), then times, alternately and `--repeats` times each, the whole `fruit360 predict`
process writing a CSV and `predict_batch` in this process (model already loaded, as a long-running caller has it).
Prints images/s of each (best of the repeats) and their ratio; the target is a ratio of at least 0.90.
"""
import argparse, csv, os, subprocess, sys, tempfile, time
from pathlib import Path


def link_images(test:Path, dest:Path, per_class:int) -> list[str]:
    "Symlinks in `dest` to the first `per_class` images of each class folder of `test`; their paths, sorted."
    for c in sorted(p for p in test.iterdir() if p.is_dir()):
        (dest/c.name).mkdir()
        for f in sorted(c.iterdir())[:per_class]: (dest/c.name/f.name).symlink_to(f)
    return sorted(str(p) for p in dest.rglob('*') if p.is_symlink())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=os.environ.get('FRUIT360_DATA'), help='a Fruits-360 folder (its Test split is used)')
    ap.add_argument('--per-class', type=int, default=45, help='images per class')
    ap.add_argument('--repeats', type=int, default=3, help='timed runs of each')
    a = ap.parse_args()
    if not a.data: sys.exit('bench/predict_cli.py: set FRUIT360_DATA or pass --data')
    from fruit360.infer import get_model, predict_batch
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp)/'imgs').mkdir()
        files = link_images(Path(a.data)/'Test', Path(tmp)/'imgs', a.per_class)
        out, clf = Path(tmp)/'f.csv', get_model()
        predict_batch(files[:64], clf)  # warm up
        cli, inproc = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            subprocess.run([str(Path(sys.executable).parent/'fruit360'), 'predict', str(Path(tmp)/'imgs'), '--out', str(out)], check=True)
            cli.append(len(files) / (time.perf_counter() - t))
            t = time.perf_counter(); answers = predict_batch(files, clf)
            inproc.append(len(files) / (time.perf_counter() - t))
        rows = list(csv.DictReader(out.open()))
        assert [r['image'] for r in rows] == files and [r['class'] for r in rows] == [x['class'] for x in answers]
    print(f'{len(files)} images, best of {a.repeats}:')
    print(f'  fruit360 predict DIR --out f.csv: {max(cli):8.1f} images/s (whole process: start, model load, CSV)')
    print(f'  predict_batch in-process:         {max(inproc):8.1f} images/s')
    print(f'  ratio: {max(cli) / max(inproc):.2f} (target >= 0.90)')


if __name__ == '__main__': main()

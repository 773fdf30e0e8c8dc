"""The GPU check in one command: install the packed wheels offline, then the gpu tests, the throughput bench and a short training.

    python3 bench/gpu_check.py [--pack .gpu] [--out DIR] [--quick]

Run from the project root on the GPU machine with the folder that `bench/gpu_pack.py` filled beside it (`make gpu-check`);
on a CPU it is the dry run (the gpu tests skip, the bench and the training run on a tiny slice with `--quick`).
Each stage runs in its own process under a time limit; a failed stage is recorded and the next ones still run.
It prints one table (stage, status, seconds, key figures) and writes `gpu_check.json` and `gpu_check.log` to the
results folder: `--out`, else `$GPU_CHECK_OUT`, else `$OUT`, else `PACK/results`. Exit status 1 when any stage failed.
"""
import argparse, json, os, signal, subprocess, sys, tempfile, threading, time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The bench's and the training's arguments on a GPU (FULL) and in the CPU dry run (--quick, QUICK).
# The stages' time limits (45 + 110 + 330 + 80 s, in `stages`) keep the whole under 9.5 minutes.
FULL = dict(bench=['--bs', '512', '64', '--max-per-class', '80', '--epochs', '5', '--fastai-loss', 'yes', '--compiled-augment', 'yes',
                   '--cuda-graphs', 'yes'],  # batch 512 first: the target's batch size, measured whole before a timeout could cut the bench
            train=['--epochs', '10', '--bs', '64', '--max-per-class', '80'])
QUICK = dict(bench=['--bs', '8', '--max-per-class', '6', '--epochs', '1', '--workers', '0', '--steps', '3', '--explain', 'yes', '--fastai-loss', 'yes'],
             train=['--epochs', '1', '--bs', '8', '--max-per-class', '6'])


def python() -> list:
    "This interpreter, with the same `-S` (no site-packages) setting, for the stages."
    return [sys.executable, *(['-S'] if sys.flags.no_site else [])]


def run_stage(cmd: list, env: dict, timeout: float, log) -> tuple:
    "Run `cmd` in its own process group, echoing its output to stdout and `log`; (status, seconds, output)."
    start, lines = time.perf_counter(), []
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors='replace', start_new_session=True)
    def pump():
        for line in proc.stdout:
            lines.append(line); sys.stdout.write(line); sys.stdout.flush(); log.write(line)
    reader = threading.Thread(target=pump, daemon=True); reader.start()
    try: status = 'ok' if proc.wait(timeout) == 0 else 'failed'
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait(); status = 'timeout'
    reader.join(5)
    return status, time.perf_counter() - start, ''.join(lines)


def read_json(path: Path) -> dict:
    "The JSON a stage wrote at `path`, or {} when it wrote none (it failed before)."
    try: return json.loads(path.read_text())
    except (OSError, ValueError): return {}


def junit_counts(path: Path) -> dict:
    "Passed, failed, skipped and error counts from pytest's JUnit XML report at `path`."
    try: suite = ET.parse(path).getroot()
    except (OSError, ET.ParseError): return {}
    suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
    n = {k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')}
    return dict(passed=n['tests'] - n['failures'] - n['errors'] - n['skipped'], failed=n['failures'], errors=n['errors'],
                skipped=n['skipped'])


def figures(stage: str, res: dict) -> str:
    "The key figures of a stage's results, in a few words."
    if not res: return ''
    if stage == 'tests': return ', '.join(f'{v} {k}' for k, v in res.items() if v)
    if stage == 'bench':
        rows = [r for r in res.get('rows', []) if r.get('images_per_s')]
        if not rows: return ''
        bare = max((r['images_per_s'] for r in rows if r['pipeline'].startswith('bare')), default=0)
        recipe = res.get('recipe_best') or max(r['images_per_s'] for r in rows if r['pipeline'].startswith('cached'))
        return f"recipe {recipe:,.0f} images/s (target {res.get('target', 0):,.0f}), bare loop {bare:,.0f}"
    if stage == 'train':
        t = res.get('test', {})
        return (f"{res.get('epochs')} epochs, {res.get('wall_time_s', 0):.1f} s, {res.get('train_images_per_s', 0):,.0f} images/s, "
                f"Test accuracy {t.get('accuracy', float('nan')):.3f}, macro-F1 {t.get('f1_macro', float('nan')):.3f}")
    return ''


def stages(pack: Path, out: Path, site: Path, quick: bool) -> list:
    "(name, command, timeout in s, where its results land) of each stage."
    py, s = python(), QUICK if quick else FULL
    wheels = sorted(str(w) for w in (pack/'wheels').glob('*.whl'))
    return [('install', [*py, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile', '--no-cache-dir',
                         '--disable-pip-version-check', '--upgrade', '--target', str(site), *wheels], 45, None),
            ('tests', [*py, '-m', 'pytest', '-m', 'gpu', 'tests/test_gpu.py', '-q', '-p', 'no:cacheprovider',
                       f"--junitxml={out/'gpu_tests.xml'}"], 110, out/'gpu_tests.xml'),
            ('bench', [*py, 'bench/train_throughput.py', *s['bench'], '--json', str(out/'bench.json')], 330, out/'bench.json'),
            ('train', [*py, 'bench/gpu_train.py', *s['train'], '--json', str(out/'train.json')], 80, out/'train.json')]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pack', default=str(ROOT/'.gpu'), help='the folder bench/gpu_pack.py filled')
    p.add_argument('--out', default=None, help='results folder (default: $GPU_CHECK_OUT, else $OUT, else PACK/results)')
    p.add_argument('--site', default=None, help='where the wheels are installed (default: a new temporary folder)')
    p.add_argument('--quick', action='store_true', help='tiny settings: the CPU dry run')
    a = p.parse_args()
    pack = Path(a.pack).resolve()
    if not (pack/'PACK.json').is_file() or not (pack/'sample').is_dir():
        sys.exit(f"gpu-check: '{pack}' is not a pack (no PACK.json and sample/): run make gpu-pack first, where the package index is reachable")
    out = Path(a.out or os.environ.get('GPU_CHECK_OUT') or os.environ.get('OUT') or pack/'results').resolve()
    out.mkdir(parents=True, exist_ok=True)
    site = Path(a.site or tempfile.mkdtemp(prefix='fruit360-gpu-site-')).resolve()
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]),
           'FRUIT360_DATA': str(pack/'sample'), 'PYTHONUNBUFFERED': '1', 'MPLBACKEND': 'Agg', 'PYTHONDONTWRITEBYTECODE': '1'}
    results, start = [], time.perf_counter()
    with open(out/'gpu_check.log', 'w') as log:
        for name, cmd, timeout, found in stages(pack, out, site, a.quick):
            print(f'\n=== {name} ===', flush=True); log.write(f'\n=== {name} ===\n')
            if found is not None: found.unlink(missing_ok=True)  # no figures of an earlier run
            status, seconds, output = run_stage(cmd, env, timeout, log)
            res = {} if found is None else junit_counts(found) if found.suffix == '.xml' else read_json(found)
            if name == 'tests' and status == 'ok' and not res: status = 'failed'  # pytest said nothing of its tests
            last = ([l.strip() for l in output.splitlines() if l.strip()] or [''])[-1][:120]
            results.append(dict(stage=name, status=status, seconds=round(seconds, 1), results=res,
                                figures=figures(name, res) if status == 'ok' else f"{figures(name, res)} | {last}".strip(' |')))
            (out/'gpu_check.json').write_text(json.dumps(dict(stages=results, pack=read_json(pack/'PACK.json')), indent=1))
    print(f"\n{'stage':<9}{'status':<9}{'seconds':>8}  key figures")
    for r in results: print(f"{r['stage']:<9}{r['status']:<9}{r['seconds']:>8.1f}  {r['figures']}")
    print(f"total {time.perf_counter() - start:.0f} s; results in {out}")
    sys.exit(0 if all(r['status'] == 'ok' for r in results) else 1)


if __name__ == '__main__': main()

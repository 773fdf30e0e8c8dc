"""The CPU dry run of the GPU check: `make gpu-pack` on a tiny sample, then `make gpu-check` on the CPU, seeing only
the Python packages that the GPU machine has (bench/gpu_image.txt) plus the packed wheels, so the one prepared command
cannot rot and a wheel missing from the pack fails here rather than on the GPU."""
import importlib.util, json, os, re, subprocess, sys
from importlib import metadata
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('gpu_pack', ROOT/'bench'/'gpu_pack.py')
gpu_pack = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(gpu_pack)


def gpu_like_site(dest: Path) -> Path:
    "A folder of links to this environment's distributions that the GPU image also has, and nothing else."
    image = gpu_pack.image_packages()
    dest.mkdir()
    for dist in metadata.distributions():
        if gpu_pack.norm(dist.metadata['Name']) not in image: continue
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith('..')}:
            src = Path(dist.locate_file(''))/top
            if src.exists() and not (dest/top).exists() and not top.endswith('.pth'): (dest/top).symlink_to(src)
    return dest


def make(*args, env=None, timeout=300):
    return subprocess.run(['make', '-s', *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope='module')
def pack(fixture_data, tmp_path_factory):
    "A tiny pack of the generated fixture, made by `make gpu-pack` (skipped when the package index is out of reach)."
    out = tmp_path_factory.mktemp('gpu')/'pack'
    res = make('gpu-pack', f'GPU_DIR={out}', 'GPU_TRAIN=6', 'GPU_TEST=2', env={'FRUIT360_DATA': str(fixture_data)})
    if res.returncode and 'could not download' in res.stderr: pytest.skip(res.stderr.strip())
    assert res.returncode == 0, res.stdout + res.stderr
    return out, res.stdout


def test_gpu_pack_holds_the_wheels_and_sample_and_reports_the_upload(pack):
    out, printed = pack
    assert re.search(r'= [\d.]+ MiB to upload \(limit 60 MiB\)', printed)
    manifest = json.loads((out/'PACK.json').read_text())
    assert {n.split('-')[0] for n in manifest['wheels']} >= {'fastai', 'fastcore', 'fasttransform', 'fastprogress'}
    assert all(n.endswith('-py3-none-any.whl') for n in manifest['wheels'])  # installable on Python 3.12 there
    assert sorted(p.name for p in (out/'wheels').iterdir()) == sorted(manifest['wheels'])
    assert {len(list(d.iterdir())) for d in (out/'sample'/'Training').iterdir()} == {6}
    assert {len(list(d.iterdir())) for d in (out/'sample'/'Test').iterdir()} == {2}


def test_gpu_pack_refuses_an_upload_over_the_limit(fixture_data, tmp_path):
    res = make('gpu-pack', f'GPU_DIR={tmp_path/"pack"}', 'GPU_LIMIT_MIB=1', env={'FRUIT360_DATA': str(fixture_data)})
    if 'could not download' in res.stderr: pytest.skip(res.stderr.strip())
    assert res.returncode != 0 and 'exceed the limit of 1 MiB' in res.stderr and 'Traceback' not in res.stderr
    assert not (tmp_path/'pack').exists()


def test_gpu_check_runs_on_the_cpu_with_only_the_gpu_image_and_the_wheels(pack, tmp_path):
    out, _ = pack
    site = gpu_like_site(tmp_path/'gpu-like')
    isolated = [sys.executable, '-S', '-c', 'import fastai']
    assert subprocess.run(isolated, env={**os.environ, 'PYTHONPATH': str(site)}, capture_output=True).returncode != 0
    res = make('gpu-check', f'GPU_DIR={out}', f'GPU_PYTHON={sys.executable} -S', f'GPU_CHECK_ARGS=--quick --out {tmp_path/"res"}',
               env={'PYTHONPATH': str(site)})
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    report = json.loads((tmp_path/'res'/'gpu_check.json').read_text())
    stages = {s['stage']: s for s in report['stages']}
    assert [s['stage'] for s in report['stages']] == ['install', 'tests', 'bench', 'train']
    assert all(s['status'] == 'ok' for s in stages.values())
    assert stages['tests']['results']['skipped'] >= 5 and stages['tests']['results']['failed'] == 0  # no CUDA here
    bench = stages['bench']['results']
    assert {r['pipeline'] for r in bench['rows']} == {'jpeg', 'cached', 'cached, fastai loss', 'bare'} and all(r['images_per_s'] > 0 for r in bench['rows'])
    e = bench['explain'][0]
    assert e['cpu_loop_ms'] > 0 and e['augment']['faults']['done_ms'] > 0 and e['host_top'] and bench['hints']  # where a batch goes
    train = stages['train']['results']
    assert train['epochs'] == 1 and 0 <= train['test']['accuracy'] <= 1 and train['wall_time_s'] > 0
    assert re.search(r'^train\s+ok\s', res.stdout, re.M)  # the printed table

"""The layers of fruit360, each module imported in a fresh interpreter: notebook order is import order, the inference
modules load no torch, export loads no fastai, and no import changes global state (warnings, environment, logging)."""
import json, re, subprocess, sys
from functools import lru_cache
from pathlib import Path
import pytest

ROOT = Path(__file__).parents[1]


def layers() -> list[str]:
    "fruit360's modules in chapter order: the `#| default_exp` of each notebook, the notebooks sorted by name."
    mods = []
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        found = [m for c in cells if c['cell_type'] == 'code' for m in re.findall(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)]
        mods += found[:1]
    return mods


LAYERS = layers()

LOADS = "import importlib, json, sys; importlib.import_module(sys.argv[1]); print(json.dumps(list(sys.modules)))"

STATE = r'''
import importlib, json, logging, os, sys, warnings
def state():
    loggers = {n: l.level for n, l in logging.Logger.manager.loggerDict.items() if isinstance(l, logging.Logger)}
    return dict(filters=[repr(f) for f in warnings.filters], environ=dict(os.environ), loggers=loggers,
                root=[logging.root.level, [repr(h) for h in logging.root.handlers]])
for m in json.load(sys.stdin):  # the libraries the module loads, in the order it loads them: their own import-time settings are theirs
    try: importlib.import_module(m)
    except Exception: pass
before = state()
importlib.import_module(sys.argv[1])
print(json.dumps(dict(before=before, after=state())))
'''


def _run(*args, stdin: str = '') -> str:
    out = subprocess.run([sys.executable, '-c', *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@lru_cache(maxsize=None)
def loads(module: str) -> list[str]:
    "The modules that importing `fruit360.<module>` in a fresh interpreter loads, in the order it loads them."
    return json.loads(_run(LOADS, f'fruit360.{module}'))


def state_change(module: str) -> dict:
    "Global state before and after importing `fruit360.<module>` alone, its third-party libraries imported first."
    others = [m for m in loads(module) if m.split('.')[0] not in ('fruit360', '__main__')]
    return json.loads(_run(STATE, f'fruit360.{module}', stdin=json.dumps(others)))


def test_the_layers_are_the_chapters():
    assert LAYERS[:3] == ['images', 'data', 'augment'] and LAYERS[-1] == 'cli'
    assert sorted(LAYERS) == sorted(p.stem for p in (ROOT/'fruit360').glob('*.py') if not p.stem.startswith('_'))


@pytest.mark.parametrize('module', LAYERS)
def test_no_module_imports_a_later_chapter(module):
    later = {f'fruit360.{m}' for m in LAYERS[LAYERS.index(module) + 1:]}
    assert sorted(later & set(loads(module))) == []


@pytest.mark.parametrize('module', ['images', 'data', 'runtime', 'serve', 'infer', 'evaluate', 'cli'])
def test_inference_modules_load_no_torch(module):
    assert [m for m in ('torch', 'torchvision', 'fastai', 'mlflow') if m in loads(module)] == []


def test_export_loads_neither_fastai_nor_torchmetrics_nor_matplotlib():
    assert [m for m in ('fastai', 'torchmetrics', 'matplotlib') if m in loads('export')] == []


@pytest.mark.parametrize('module', LAYERS)
def test_importing_changes_no_global_state(module):
    p = state_change(module)
    before, after = p['before'], p['after']
    assert after['filters'] == before['filters']  # warnings filters
    assert after['environ'] == before['environ']
    assert after['root'] == before['root']  # the root logger's level and handlers
    assert {n: after['loggers'][n] for n in before['loggers']} == before['loggers']  # the levels of loggers that existed
    assert {n: l for n, l in after['loggers'].items() if n.startswith('fruit360') and l} == {}

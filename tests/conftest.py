"Shared pytest fixtures: the real Fruits-360 subset when FRUIT360_DATA points at it, else a generated fixture; a served model."
import os
from pathlib import Path
import pytest

REAL = Path(os.environ['FRUIT360_DATA']) if os.environ.get('FRUIT360_DATA') else None
needs_real_data = pytest.mark.skipif(REAL is None or not REAL.is_dir(),
                                     reason='set FRUIT360_DATA to the Fruits-360 subset to run this test')


@pytest.fixture(scope='session')
def fixture_data(tmp_path_factory):
    "A small generated dataset in the Fruits-360 layout (synthetic shapes, not real fruit)."
    from fruit360.data import make_synthetic_fruits
    return make_synthetic_fruits(tmp_path_factory.mktemp('fixture')/'fruits', n_classes=4, n_per_class=24)


@pytest.fixture(scope='session')
def data_path(fixture_data):
    "The real subset when available, else the generated fixture."
    return REAL if REAL is not None and REAL.is_dir() else fixture_data


@pytest.fixture(scope='module')
def server():
    "`fruit360 serve` on a free loopback port for the tests of one module: its URL and process."
    from helpers import BIN, free_port, running
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    with running([str(BIN/'fruit360'), 'serve', '--port', str(port)], f'{url}/ping') as proc:
        yield url, proc

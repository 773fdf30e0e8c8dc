"Stopping `fruit360 serve` stops everything: whatever the signal, even with a request in flight, the port is free and the temporary model folder gone."
import base64, io, json, os, signal, socket, subprocess, threading, time, urllib.error, urllib.request
import pytest
from PIL import Image
from helpers import BIN, free_port, kill_listeners, port_free, wait_until_up


def slow_request() -> bytes:
    "A valid request whose decoding takes a worker seconds: two blank 4900 x 4900 1-bit PNGs (48 M pixels, under the 50 M budget)."
    buf = io.BytesIO()
    Image.new('1', (4900, 4900)).save(buf, 'PNG')
    enc = base64.b64encode(buf.getvalue()).decode()
    return json.dumps({'dataframe_split': {'columns': ['image'], 'data': [[enc], [enc]]}}).encode()


def send(url: str, body: bytes, answers: list):
    req = urllib.request.Request(f'{url}/invocations', body, {'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=60) as r: answers.append(r.status)
    except urllib.error.HTTPError as e: answers.append(e.code)
    except OSError as e: answers.append(type(e).__name__)


SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


@pytest.fixture(scope='module')
def servers(tmp_path_factory):
    "A `fruit360 serve` for each stop signal, started together to save time: {signal: (process, port, its TMPDIR)}."
    started = {}
    try:
        for sig in SIGNALS:
            tmp, port = tmp_path_factory.mktemp(sig.name), free_port()
            proc = subprocess.Popen([str(BIN/'fruit360'), 'serve', '--port', str(port)], env={**os.environ, 'TMPDIR': str(tmp)},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            started[sig] = proc, port, tmp
        for proc, port, _ in started.values(): wait_until_up(f'http://127.0.0.1:{port}/ping', proc)
        yield started
    finally:
        for proc, port, _ in started.values():
            if proc.poll() is None: proc.terminate()
            try: proc.wait(20)
            except subprocess.TimeoutExpired: proc.kill()
            kill_listeners(port)  # what a failure left behind


@pytest.mark.parametrize('sig', SIGNALS, ids=lambda s: s.name)
def test_a_stop_signal_with_a_request_in_flight_stops_everything(servers, sig):
    proc, port, tmp = servers[sig]
    url = f'http://127.0.0.1:{port}'
    [mlmodel] = tmp.glob('*/mlflow_model/MLmodel')  # the temporary model folder of `fruit360 serve`
    answers = []
    client = threading.Thread(target=send, args=(url, slow_request(), answers))
    client.start()
    time.sleep(1)  # the request is being decoded
    assert client.is_alive()
    proc.send_signal(sig)
    assert proc.wait(30) == 0
    assert port_free(port)  # at once: a new server could start on it
    assert not mlmodel.parent.parent.exists()
    client.join(60)
    assert answers and answers[0] != 500
    out = proc.stdout.read()
    assert 'Traceback' not in out, out


def test_a_port_in_use_is_one_line_before_anything_else():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([str(BIN/'fruit360'), 'serve', '--port', str(port)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stdout == ''
    assert r.stderr.startswith(f'fruit360 serve: error: port {port} on 127.0.0.1 is in use') and r.stderr.count('\n') == 1, r.stderr

"The HTTP service, really started: answers match in-process prediction; bad requests get 4xx and the server stays up."
import base64, http.client, io, json, random, select, socket, subprocess, time, urllib.error, urllib.request
from pathlib import Path
import numpy as np
import psutil, pytest
from PIL import Image
from helpers import BIN, free_port, http_post, running
from fruit360.infer import predict
from fruit360.serve import (HEADER_TIMEOUT, MAX_BATCH, MAX_BODY_BYTES, MAX_REQUEST_PIXELS, port_in_use, predict_url, request_body,
                            save_mlflow_model, start_server, stop_server, wait_until_up)


@pytest.fixture(scope='module')
def images(data_path):
    "One Test image of each of up to 8 classes (real ones when FRUIT360_DATA is set)."
    classes = sorted(p for p in (data_path/'Test').iterdir())[:8]
    return [sorted(c.iterdir())[0] for c in classes]


def post(url, body: bytes, content_type='application/json'):
    "Status and answer (parsed JSON, or text) of a POST to the server's /invocations."
    req = urllib.request.Request(f'{url}/invocations', body, {'Content-Type': content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as r: status, answer = r.status, r.read()
    except urllib.error.HTTPError as e: status, answer = e.code, e.read()
    try: return status, json.loads(answer)
    except ValueError: return status, answer.decode()


def b64(data: bytes) -> str: return base64.b64encode(data).decode()


def frame(*encoded) -> bytes:
    return json.dumps({'dataframe_split': {'columns': ['image'], 'data': [[e] for e in encoded]}}).encode()


def test_listens_on_loopback_only(server):
    url, proc = server
    port = int(url.rsplit(':', 1)[1])
    addrs = {c.laddr.ip for c in psutil.net_connections('tcp') if c.status == 'LISTEN' and c.laddr.port == port}
    assert addrs == {'127.0.0.1'}


def test_answers_match_in_process_prediction(server, images):
    url, _ = server
    remote = predict_url(url, images)
    local = [predict(i) for i in images]
    assert [r['class'] for r in remote] == [l['class'] for l in local]
    for r, l in zip(remote, local):
        assert r['probabilities'].keys() == l['probabilities'].keys()
        assert max(abs(r['probabilities'][k] - l['probabilities'][k]) for k in l['probabilities']) < 1e-5
    assert [r['known'] for r in remote] == [l['known'] for l in local]
    assert max(abs(r['novelty'] - l['novelty']) for r, l in zip(remote, local)) < 1e-5
    noise = io.BytesIO(); Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(noise, 'PNG')
    assert predict_url(url, [noise.getvalue()])[0]['known'] is False  # not a fruit: the service says so
    top = predict_url(url, images[:1], topk=3)[0]
    assert list(top['probabilities']) == list(predict(images[0], topk=3)['probabilities'])


def bomb() -> bytes:
    "A small PNG whose header says 20,000 x 20,000 pixels."
    buf = io.BytesIO()
    Image.new('1', (20_000, 20_000)).save(buf, 'PNG')
    return buf.getvalue()


def bad_requests(good: bytes):
    "(name, body, content type, text the answer must contain)"
    cut = good[:len(good) // 2]
    return [
        ('malformed JSON', b'{"dataframe_split": [', 'application/json', 'Invalid input'),
        ('missing column', json.dumps({'dataframe_split': {'columns': ['photo'], 'data': [[b64(good)]]}}).encode(),
         'application/json', 'image'),
        ('bad base64', frame('not*base64!'), 'application/json', 'not valid base64'),
        ('not an image', frame(b64(b'just some text')), 'application/json', 'not a readable image'),
        ('empty image', frame(''), 'application/json', 'non-empty base64'),
        ('truncated JPEG', frame(b64(cut)), 'application/json', 'damaged or truncated'),
        ('decompression bomb', frame(b64(bomb())), 'application/json', 'over the limit'),
        ('batch too large', frame(*[b64(good)] * (MAX_BATCH + 1)), 'application/json', f'send at most {MAX_BATCH}'),
        ('wrong content type', b'hello', 'text/plain', 'content types'),
    ]


def test_bad_requests_get_4xx_naming_the_problem_and_the_server_stays_up(server, images):
    url, proc = server
    good = images[0].read_bytes()
    cases = bad_requests(good)
    for name, body, ctype, expected in cases:
        status, answer = post(url, body, ctype)
        assert 400 <= status < 500, (name, status, answer)
        assert expected in json.dumps(answer), (name, answer)
    rng = random.Random(0)
    statuses = [post(url, body, ctype)[0] for name, body, ctype, _ in (rng.choice(cases) for _ in range(300))]
    assert all(400 <= s < 500 for s in statuses)
    assert proc.poll() is None
    status, answer = post(url, frame(b64(good)))
    assert status == 200 and answer['predictions'][0]['class'] == predict(images[0])['class']


def test_request_body_is_what_the_readme_shows(images):
    body = json.loads(request_body(images[:2], topk=2))
    assert body['dataframe_split']['columns'] == ['image'] and body['params'] == {'topk': 2}
    assert base64.b64decode(body['dataframe_split']['data'][1][0]) == Path(images[1]).read_bytes()


def test_a_server_started_from_python_answers_as_the_model_does_and_stops(tmp_path):
    "The whole path from Python, as `03b_serve` describes it: `start_server` on a free port, `predict_url`, `stop_server`."
    port = free_port()
    proc = start_server(save_mlflow_model(path=tmp_path/'mlflow_model'), port=port, workers=1, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = wait_until_up(f'http://127.0.0.1:{port}/ping', proc).rsplit('/', 1)[0]
        img = tmp_path/'white.jpg'
        Image.new('RGB', (300, 200), 'white').save(img)
        remote, local = predict_url(url, [img])[0], predict(img)
        assert remote['class'] == local['class']
        assert max(abs(remote['probabilities'][k] - p) for k, p in local['probabilities'].items()) < 1e-6
        with pytest.raises(ValueError, match='is not a readable image'): predict_url(url, [b'not an image'])
    finally: stop_server(proc)
    assert port_in_use('127.0.0.1', port) is None


def test_stopping_fruit360_serve_leaves_no_server_behind():
    port = free_port()
    with running([str(BIN/'fruit360'), 'serve', '--port', str(port)], f'http://127.0.0.1:{port}/ping') as proc:
        server_pids = {c.pid for c in psutil.net_connections('tcp') if c.status == 'LISTEN' and c.laddr.port == port}
        assert server_pids
    assert proc.returncode is not None
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in server_pids if psutil.pid_exists(p)], timeout=20)
    assert not alive


def png_1bit(w: int, h: int) -> bytes:
    "A tiny PNG of a blank w x h 1-bit image: a few KB that decode to w*h pixels."
    buf = io.BytesIO()
    Image.new('1', (w, h)).save(buf, 'PNG')
    return buf.getvalue()


def assert_short_error(status, answer: bytes, *leaks: bytes):
    "A 4xx answer of short JSON that holds no stack trace, no file path and none of `leaks` (parts of the request)."
    assert 400 <= status < 500, (status, answer[:300])
    assert len(answer) < 1000, answer[:300]
    assert set(json.loads(answer)) == {'error_code', 'message'}, answer
    for bad in (b'Traceback', b'File "', b'site-packages', b'.venv', b'/work/', *leaks):
        assert bad not in answer, (bad, answer)


def test_a_request_over_the_pixel_budget_is_refused_from_the_headers(server, images):
    url, proc = server
    bomb64 = frame(*[b64(png_1bit(6300, 6300))] * 64)  # 420 KB that decode to 2.5 billion pixels
    start = time.monotonic()
    status, answer = post(url, bomb64)
    assert status == 400 and f'over the limit of {MAX_REQUEST_PIXELS:,} per request' in answer['message'], answer
    assert time.monotonic() - start < 5
    assert predict_url(url, images[:1])[0]['class'] == predict(images[0])['class']


def test_a_body_over_the_limit_gets_413_before_it_is_read(server):
    url, proc = server
    port = int(url.rsplit(':', 1)[1])
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    conn.putrequest('POST', '/invocations')
    conn.putheader('Content-Type', 'application/json')
    conn.putheader('Content-Length', str(200_000_000))
    conn.endheaders()  # 200 MB announced, not one byte sent
    r = conn.getresponse()
    assert_short_error(r.status, r.read())
    assert r.status == 413
    conn.close()
    with socket.create_connection(('127.0.0.1', port), timeout=30) as s:  # no Content-Length: counted as it streams in
        s.sendall(b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n')
        chunk, sent = b'%x\r\n%s\r\n' % (1_000_000, b'A' * 1_000_000), 0
        while not select.select([s], [], [], 0)[0] and sent < 2 * MAX_BODY_BYTES:
            s.sendall(chunk); sent += 1_000_000
        assert s.recv(100).startswith(b'HTTP/1.1 413 ')
    assert MAX_BODY_BYTES <= sent < MAX_BODY_BYTES + 10_000_000


MARK = b'ECHO_ME_NOT'

def client_errors():
    "(name, body, headers): requests that MLflow's app answered with a 5xx, a stack trace or an echo of the body."
    j = {'Content-Type': 'application/json'}
    return [
        ('deeply nested JSON', b'[' * 100_000 + MARK, j),
        ('deep but small JSON', b'{"dataframe_split": ' + b'[' * 900 + b'"' + MARK + b'"' + b']' * 900 + b'}', j),
        ('no Content-Type', frame(b64(b'x')) + b' ' + MARK, {}),
        ('malformed text/csv', b'image\n"' + MARK + b'\n,,"\n\x00', {'Content-Type': 'text/csv'}),
        ('parquet', b'PAR1' + MARK, {'Content-Type': 'application/vnd.apache.parquet'}),
        ('1 MB of malformed JSON', b'{"dataframe_split": [' + MARK * 100_000, j),
        ('a 5000-digit number', b'{"dataframe_split": ' + b'7' * 5000 + b', "x": "' + MARK + b'"}', j),
        ('not UTF-8', b'{"dataframe_split": "\xff\xfe' + MARK + b'"}', j),
        ('wrong charset', frame(b64(MARK)), {'Content-Type': 'application/json; charset=latin-1'}),
        ('a list', json.dumps([MARK.decode()]).encode(), j),
        ('unknown key', json.dumps({MARK.decode(): 1}).encode(), j),
        ('bad shape', json.dumps({'dataframe_split': {'columns': ['image'], 'data': MARK.decode()}}).encode(), j),
        ('bad topk', json.dumps({'dataframe_split': {'columns': ['image'], 'data': [['QUJD']]}, 'params': {'topk': MARK.decode()}}).encode(), j),
        ('negative topk', json.dumps({'dataframe_split': {'columns': ['image'], 'data': [['QUJD']]}, 'params': {'topk': -3}}).encode(), j),
    ]


@pytest.mark.parametrize('name,body,headers', client_errors(), ids=[c[0] for c in client_errors()])
def test_client_errors_get_a_short_4xx_that_echoes_nothing(server, name, body, headers):
    url, proc = server
    status, answer = http_post(f'{url}/invocations', body, headers)
    assert_short_error(status, answer, MARK)
    assert proc.poll() is None


def closed_by_server(s: socket.socket) -> bool:
    if not select.select([s], [], [], 0)[0]: return False
    try: return s.recv(1024) == b''
    except ConnectionError: return True


def test_idle_and_slow_connections_are_closed(server, images):
    url, proc = server
    port = int(url.rsplit(':', 1)[1])
    socks = {name: socket.create_connection(('127.0.0.1', port)) for name in ('idle', 'partial header', 'trickle')}
    socks['partial header'].sendall(b'POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    socks['trickle'].sendall(b'POST /invocations HTTP/1.1\r\nX-Slow: ')
    start, closed = time.monotonic(), {}
    while len(closed) < len(socks) and time.monotonic() - start < HEADER_TIMEOUT + 10:
        try: socks['trickle'].sendall(b'a')  # a byte a second does not keep the connection
        except OSError: pass
        closed.update({n: time.monotonic() - start for n, s in socks.items() if n not in closed and closed_by_server(s)})
        time.sleep(1)
    for s in socks.values(): s.close()
    assert set(closed) == set(socks), closed
    assert max(closed.values()) < HEADER_TIMEOUT + 3, closed
    assert predict_url(url, images[:1])[0]['class'] == predict(images[0])['class']


def test_only_the_documented_paths_are_answered(server):
    url, proc = server
    port = int(url.rsplit(':', 1)[1])
    def answer(method, path):
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, r.read()
        finally: conn.close()
    assert [answer('GET', p)[0] for p in ('/ping', '/health', '/version')] == [200] * 3
    for path in ('/docs', '/redoc', '/openapi.json', '/docs/oauth2-redirect', '/', '/nope', '/invocationsx'):
        status, body = answer('GET', path)
        assert status == 404 and 'the server answers /ping, /health, /version, /invocations' in json.loads(body)['message'], (path, body)
    assert answer('POST', '/invocations/')[0] == 307  # FastAPI's redirect to /invocations, as before
    assert answer('GET', '/ping/')[0] == 307


def test_a_number_over_the_digit_limit_is_named(server):
    url, _ = server
    status, answer = http_post(f'{url}/invocations', b'{"inputs": [' + b'7' * 5000 + b']}', {'Content-Type': 'application/json'})
    assert status == 400 and 'a number of over 4,300 digits' in json.loads(answer)['message'], answer

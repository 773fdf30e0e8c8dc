"The HTTP service, really started: answers match in-process prediction; bad requests get 4xx and the server stays up."
import base64, io, json, random, urllib.error, urllib.request
from pathlib import Path
import psutil, pytest
from PIL import Image
from helpers import BIN, free_port, running
from fruit360.infer import predict
from fruit360.serve import MAX_BATCH, predict_url, request_body


@pytest.fixture(scope='module')
def server():
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    with running([str(BIN/'fruit360'), 'serve', '--port', str(port)], f'{url}/ping') as proc:
        yield url, proc


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


def test_stopping_fruit360_serve_leaves_no_server_behind():
    port = free_port()
    with running([str(BIN/'fruit360'), 'serve', '--port', str(port)], f'http://127.0.0.1:{port}/ping') as proc:
        server_pids = {c.pid for c in psutil.net_connections('tcp') if c.status == 'LISTEN' and c.laddr.port == port}
        assert server_pids
    assert proc.returncode is not None
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in server_pids if psutil.pid_exists(p)], timeout=20)
    assert not alive

"The client `predict_url` (and `fruit360 predict --url`) asking servers that answer wrongly, hugely or slowly: one-line errors, bounded memory and time."
import io, json, socket, subprocess, threading, time, tracemalloc
from contextlib import contextmanager
import pytest
from PIL import Image
from helpers import BIN
from fruit360.serve import MAX_ANSWER_BYTES, predict_url

IMG = b'image bytes: the client sends them unread'


def http(status: bytes, body: bytes, extra: bytes = b'') -> bytes:
    return b'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n' % (status, len(body), extra) + body


def read_request(c: socket.socket):
    "Read a request's headers and its Content-Length body (a socket closed with unread data resets the connection)."
    data = b''
    while b'\r\n\r\n' not in data: data += c.recv(65536)
    head, _, body = data.partition(b'\r\n\r\n')
    n = next(int(l.split(b':')[1]) for l in head.split(b'\r\n') if l.lower().startswith(b'content-length'))
    while len(body) < n: body += c.recv(65536)


@contextmanager
def fake_server(answer):
    "A server on a free loopback port answering each request with the bytes `answer`, or by calling `answer(sock, stop)`; its URL."
    srv = socket.create_server(('127.0.0.1', 0))
    srv.settimeout(0.2)
    stop = threading.Event()
    def handle(c):
        with c:
            try:
                c.settimeout(10); read_request(c)
                answer(c, stop) if callable(answer) else c.sendall(answer)
            except OSError: pass
    def accept():
        while not stop.is_set():
            try: threading.Thread(target=handle, args=(srv.accept()[0],), daemon=True).start()
            except TimeoutError: pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try: yield f'http://127.0.0.1:{srv.getsockname()[1]}'
    finally:
        stop.set(); t.join(); srv.close()


WRONG = {  # name: (what the server sends, what the error says)
    'no predictions': (http(b'200 OK', b'{"foo": 1}'), "which is not a fruit360 model server's answer"),
    'a list': (http(b'200 OK', b'[1,2]'), "list of 'predictions'"),
    'fewer answers than images': (http(b'200 OK', b'{"predictions": []}'), '0 predictions for 1 images'),
    'null predictions': (http(b'200 OK', b'{"predictions": null}'), "list of 'predictions'"),
    'a string for an answer': (http(b'200 OK', b'{"predictions": ["x"]}'), 'prediction 0 is not'),
    'HTML': (http(b'200 OK', b'<html>hello</html>'), 'not JSON'),
    'error of a list': (http(b'400 Bad Request', b'[1,2]'), 'refused the request (400): [1,2]'),
    'error of a number': (http(b'400 Bad Request', b'{"message": 123}'), 'refused the request (400): {"message": 123}'),
    'a traceback': (http(b'500 Internal Server Error', b'Traceback (most recent call last):\n  File "/srv/x.py"\nKeyError: 1\n'), '(500): KeyError: 1'),
    'not HTTP': (b'SSH-2.0-OpenSSH_9.0\r\n', 'gave no valid HTTP answer'),
    'cut short': (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"predictions": [', 'gave no valid HTTP answer'),
    'bad chunks': (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n', 'gave no valid HTTP answer'),
    'a 70 KB status line': (b'HTTP/1.1 200 ' + b'A' * 70_000 + b'\r\n\r\n', 'gave no valid HTTP answer'),
    '200 headers': (b'HTTP/1.1 200 OK\r\n' + b''.join(b'X-%d: a\r\n' % i for i in range(200)) + b'\r\n{}', 'gave no valid HTTP answer'),
    'escape sequences': (http(b'400 Bad Request', b'{"message": "\\u001b[2J\\u001b[31mHACKED\\u0007"}'), '(400): \\x1b[2J\\x1b[31mHACKED\\x07'),
}


@pytest.mark.parametrize('name', WRONG)
def test_a_wrong_answer_is_one_short_line_naming_the_url(name):
    sent, says = WRONG[name]
    with fake_server(sent) as url:
        with pytest.raises(ValueError) as e: predict_url(url, [IMG], timeout=10)
    msg = str(e.value)
    assert says in msg and url in msg, msg
    assert len(msg) < 600 and msg.isprintable(), msg  # no newline, no escape sequence


def stream(n: int, status: bytes = b'200 OK', length: bool = False):
    "A server's answer of `n` bytes, streamed a MB at a time, with or without its Content-Length."
    def send(c, stop):
        c.sendall(b'HTTP/1.1 %s\r\nContent-Type: application/json\r\n%s\r\n' % (status, b'Content-Length: %d\r\n' % n if length else b''))
        for _ in range(n >> 20): c.sendall(b' ' * (1 << 20))
    return send


@pytest.mark.parametrize('status,length', [(b'200 OK', False), (b'200 OK', True), (b'400 Bad Request', True)])
def test_a_huge_answer_is_refused_with_bounded_memory(status, length):
    with fake_server(stream(100 << 20, status, length)) as url:
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=f'answered over {MAX_ANSWER_BYTES:,} bytes'): predict_url(url, [IMG], timeout=20)
            peak = tracemalloc.get_traced_memory()[1]
        finally: tracemalloc.stop()
    assert peak < 3 * MAX_ANSWER_BYTES, peak


def trickle(headers: bytes):
    "A server that sends `headers`, then a byte every 0.3 s: never idle long enough for a per-read timeout."
    def send(c, stop):
        c.sendall(headers)
        while not stop.wait(0.3): c.sendall(b'H' if not headers else b' ')
    return send


@pytest.mark.parametrize('headers', [b'', b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n'],
                         ids=['in the status line', 'in the body'])
def test_the_timeout_is_for_the_whole_exchange(headers):
    with fake_server(trickle(headers)) as url:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=f'the server at {url} did not answer within 2 s'): predict_url(url, [IMG], timeout=2)
        assert time.monotonic() - start < 3.5


def test_fruit360_predict_url_prints_one_line_per_wrong_answer(tmp_path):
    img = tmp_path/'red.png'
    Image.new('RGB', (50, 50), 'red').save(img)
    for sent, _ in (WRONG['no predictions'], WRONG['not HTTP'], WRONG['escape sequences']):
        with fake_server(sent) as url:
            r = subprocess.run([str(BIN/'fruit360'), 'predict', '--url', url, str(img)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
        assert r.stderr.startswith('fruit360 predict: ') and r.stderr.count('\n') == 1 and '\x1b' not in r.stderr, r.stderr

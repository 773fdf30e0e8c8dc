"Starting real servers on free loopback ports for the tests."
import http.client, socket, subprocess, sys, tempfile, time, urllib.parse, urllib.request
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 120):
    "Wait until `url` answers, failing early if `proc` dies."
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f'server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ""}')
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f'{url} did not answer within {timeout} s')


@contextmanager
def running(cmd: list, ready_url: str, **kw):
    "Run the server `cmd` until the block ends, once `ready_url` answers; its output goes to a file (a pipe left unread would fill and block it)."
    log = tempfile.TemporaryFile('w+')
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, **kw)
    proc.log = log
    try:
        try: wait_for(ready_url, proc)
        except (RuntimeError, TimeoutError) as e:
            log.seek(0)
            raise type(e)(f'{e}\n{log.read()[-5000:]}') from None
        yield proc
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


def port_free(port: int, host: str = '127.0.0.1') -> bool:
    "Whether a new server could listen on `port` (binding as uvicorn does, with SO_REUSEADDR)."
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try: s.bind((host, port))
        except OSError: return False
        return True


def http_post(url: str, body: bytes, headers: dict, timeout: float = 30) -> tuple[int, bytes]:
    "Status and raw answer of a POST to `url` with exactly the headers given (none added, not even Content-Type)."
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request('POST', u.path, body, headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally: conn.close()


def kill_listeners(port: int):
    "Kill the process groups of whatever still listens on `port` (a server a failing test left behind)."
    import os, signal, psutil
    for c in psutil.net_connections('tcp'):
        if c.status == 'LISTEN' and c.laddr.port == port and c.pid and os.getpgid(c.pid) != os.getpgrp():
            try: os.killpg(os.getpgid(c.pid), signal.SIGKILL)
            except OSError: pass

"Starting real servers on free loopback ports for the tests."
import http.client, socket, subprocess, sys, tempfile, urllib.parse
from contextlib import contextmanager
from pathlib import Path
from fruit360.serve import free_port, wait_until_up  # noqa: F401  (the one way fruit360 starts servers on free ports)

BIN = Path(sys.executable).parent


@contextmanager
def running(cmd: list, ready_url: str, **kw):
    "Run the server `cmd` until the block ends, once `ready_url` answers; its output goes to a file (a pipe left unread would fill and block it)."
    log = tempfile.TemporaryFile('w+')
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, **kw)
    proc.log = log
    try:
        try: wait_until_up(ready_url, proc)
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

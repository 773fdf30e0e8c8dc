"Starting real servers on free loopback ports for the tests."
import socket, subprocess, sys, time, urllib.request
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
    "Run the server `cmd` until the block ends, once `ready_url` answers."
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    try:
        wait_for(ready_url, proc)
        yield proc
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()

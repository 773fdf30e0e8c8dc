"""The HTTP service under load: single-image requests on loopback at concurrency 1 and 8.

    python -m bench.serve_http [--image PATH] [--seconds 20] [--workers 2] [--threads 1]   (from the project root)

Starts `fruit360 serve` (MLflow's scoring app on uvicorn) on a free loopback port, then, for each concurrency,
keeps that many client processes sending one-image requests for `--seconds` and prints requests/s, p50 and
p99 latency, the number of errors and the spread of the per-connection p50 (uvicorn's workers may split
the keep-alive connections unevenly; the busier worker's connections then wait longer). Beside it, in the
same run: in-process `predict` calls/s on the same image, and the model alone on ONNX Runtime vs PyTorch
eager (see bench/infer.py).
"""
import argparse, http.client, multiprocessing as mp, subprocess, sys, time
from pathlib import Path
import numpy as np
from bench.infer import bench_image, model_comparison, rate


def client(port, body, seconds, out):
    "Send `body` again and again for `seconds` over one keep-alive connection; put (latencies, errors) in `out`."
    conn, lat, errors = http.client.HTTPConnection('127.0.0.1', port, timeout=30), [], 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        s = time.perf_counter()
        try:
            conn.request('POST', '/invocations', body, {'Content-Type': 'application/json'})
            r = conn.getresponse(); data = r.read()
            ok = r.status == 200 and b'"predictions"' in data
        except OSError:
            ok = False; conn.close(); conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        lat.append(time.perf_counter() - s); errors += not ok
    out.put((lat, errors))


def load(port, body, concurrency, seconds):
    "Requests/s, p50 and p99 latency (ms), errors, and the lowest and highest per-connection p50 with `concurrency` clients."
    q = mp.Queue()
    procs = [mp.Process(target=client, args=(port, body, seconds, q)) for _ in range(concurrency)]
    for p in procs: p.start()
    results = [q.get() for _ in procs]
    for p in procs: p.join()
    lat = np.concatenate([r[0] for r in results]) * 1e3
    per_connection = [np.median(r[0]) * 1e3 for r in results]
    return (len(lat) / seconds, np.percentile(lat, 50), np.percentile(lat, 99), sum(r[1] for r in results),
            min(per_connection), max(per_connection))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--image', default=None)
    p.add_argument('--seconds', type=float, default=20)
    p.add_argument('--workers', type=int, default=2)  # fruit360 serve's defaults
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--checkpoint', default='models_artifacts/custom_cnn.pth')
    a = p.parse_args()
    from fruit360.infer import predict
    from fruit360.serve import free_port, request_body, wait_until_up
    image = bench_image(a.image)
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent/'fruit360'), 'serve', '--port', str(port), '--workers', str(a.workers),
                               '--threads', str(a.threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # stops its server on SIGTERM
    try:
        wait_until_up(f'http://127.0.0.1:{port}/ping', server)
        body = request_body([image])
        load(port, body, 2, 2)  # warm up every worker
        print(f'server: fruit360 serve (MLflow scoring app on uvicorn), {a.workers} workers x {a.threads} ONNX Runtime threads; '
              f'one {Path(image).stat().st_size:,}-byte image per request; {a.seconds:.0f} s per row')
        print(f'{"concurrency":>11}{"requests/s":>12}{"p50 ms":>9}{"p99 ms":>9}{"errors":>8}  p50 per connection, ms')
        for c in (1, 8):
            rps, p50, p99, errors, lo, hi = load(port, body, c, a.seconds)
            print(f'{c:>11}{rps:>12,.0f}{p50:>9.1f}{p99:>9.1f}{errors:>8}  {lo:.1f} to {hi:.1f}')
    finally:
        server.terminate(); server.wait()
    print(f'in-process predict(image): {rate(lambda: predict(image), 1):,.0f} predictions/s')
    rows = model_comparison(a.checkpoint)
    print(f"model alone, batch 1 p50: pytorch {rows[1]['pytorch'][0]:.2f} ms, onnxruntime {rows[1]['onnxruntime'][0]:.2f} ms; "
          f"batch 64: pytorch {rows[64]['pytorch']:,.0f} images/s, onnxruntime {rows[64]['onnxruntime']:,.0f} images/s")


if __name__ == '__main__': main()

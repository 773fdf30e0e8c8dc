"""Inference speed on this machine: predict on one image, predict_batch, ONNX Runtime vs PyTorch, the CLI.

    python bench/infer.py [--image PATH] [--checkpoint models_artifacts/custom_cnn.pth] [--against OTHER.onnx]

Prints, in one run:
- `predict` on one 100x100 image file: p50 and p99 latency (decoding included);
- `predict_batch` images/s over 512 image files (decoding included), beside the same with the PyTorch model;
- the model alone, ONNX Runtime vs PyTorch eager (`ProbabilityModel` of the checkpoint), batch 1 latency and
  batch 64 images/s, on the same uint8 input;
- the whole-process time of `fruit360 predict IMAGE` (median of 10 runs);
- with `--against`, `predict` p50 with the shipped model and with another exported one (an earlier model, say, from
  `git show REV:fruit360/models/default.onnx`), 5 rounds of 200 calls each in turns, and their ratio: what the model
  changes, on cores whose speed drifts.
"""
import argparse, statistics, subprocess, sys, time
from pathlib import Path
import numpy as np


def percentiles(f, n=1000, warmup=20):
    "p50 and p99 of `f()` in milliseconds over `n` calls."
    for _ in range(warmup): f()
    t = []
    for _ in range(n):
        s = time.perf_counter(); f(); t.append((time.perf_counter() - s) * 1e3)
    return np.percentile(t, 50), np.percentile(t, 99)


def rate(f, items, seconds=3.0):
    "Items per second of `f()` (which handles `items` items), over about `seconds`."
    f(); n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds: f(); n += 1
    return n * items / (time.perf_counter() - start)


def bench_image(path=None) -> str:
    "The image file to time: `path`, or a 100x100 one drawn here."
    if path is not None: return path
    from PIL import Image
    Image.new('RGB', (100, 100), (180, 40, 40)).save('/tmp/fruit360_bench.jpg')
    return '/tmp/fruit360_bench.jpg'


def model_comparison(checkpoint):
    "ONNX Runtime vs PyTorch eager on the same uint8 batches: batch-1 p50/p99 ms and batch-64 images/s."
    import torch
    from fruit360.runtime import OnnxClassifier
    from fruit360.checkpoint import ProbabilityModel, load_checkpoint
    torch_model = ProbabilityModel(load_checkpoint(checkpoint)[0]).eval()
    clf = OnnxClassifier()
    rows = {}
    for bs in (1, 64):
        x = np.random.default_rng(0).integers(0, 256, (bs, 100, 100, 3), dtype=np.uint8)
        xt = torch.from_numpy(x)
        def run_torch():
            with torch.inference_mode(): torch_model(xt)
        run_onnx = lambda: clf.probabilities(x)
        rows[bs] = {name: (percentiles(f, 300) if bs == 1 else rate(f, bs)) for name, f in (('pytorch', run_torch), ('onnxruntime', run_onnx))}
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--image', default=None, help='a 100x100 image (default: one drawn here)')
    p.add_argument('--checkpoint', default='models_artifacts/custom_cnn.pth')
    p.add_argument('--against', default=None, help="another exported model (.onnx) whose predict is timed in turns with the shipped one's")
    a = p.parse_args()
    t0 = time.perf_counter()
    from fruit360.infer import get_model, predict, predict_batch
    import_s = time.perf_counter() - t0
    image = bench_image(a.image)
    get_model()
    p50, p99 = percentiles(lambda: predict(image))
    print(f'import fruit360.infer: {import_s * 1e3:.0f} ms')
    print(f'predict(one 100x100 file): p50 {p50:.2f} ms, p99 {p99:.2f} ms')

    import torch
    from fruit360.images import load_rgb
    from fruit360.checkpoint import ProbabilityModel, load_checkpoint
    torch_model = ProbabilityModel(load_checkpoint(a.checkpoint)[0]).eval()
    files = [image] * 512
    def torch_batch():
        for i in range(0, len(files), 64):
            with torch.inference_mode(): torch_model(torch.from_numpy(np.stack([load_rgb(f) for f in files[i:i + 64]])))
    onnx_rate, torch_rate = rate(lambda: predict_batch(files), len(files)), rate(torch_batch, len(files))
    print(f'predict_batch(512 files, batches of 64): onnxruntime {onnx_rate:,.0f} images/s, pytorch {torch_rate:,.0f} images/s '
          f'({onnx_rate / torch_rate:.2f}x)')

    rows = model_comparison(a.checkpoint)
    (tp50, tp99), (op50, op99) = rows[1]['pytorch'], rows[1]['onnxruntime']
    print(f'model alone, batch 1: pytorch p50 {tp50:.2f} ms (p99 {tp99:.2f}), onnxruntime p50 {op50:.2f} ms (p99 {op99:.2f}): {tp50 / op50:.2f}x')
    print(f"model alone, batch 64: pytorch {rows[64]['pytorch']:,.0f} images/s, onnxruntime {rows[64]['onnxruntime']:,.0f} images/s: "
          f"{rows[64]['onnxruntime'] / rows[64]['pytorch']:.2f}x")

    cli = str(Path(sys.executable).parent/'fruit360')
    runs = []
    for _ in range(10):
        s = time.perf_counter(); subprocess.run([cli, 'predict', image], check=True, capture_output=True); runs.append(time.perf_counter() - s)
    print(f'fruit360 predict IMAGE (whole process): median {statistics.median(runs):.3f} s, min {min(runs):.3f} s')

    if a.against:
        models = {'shipped': get_model(), a.against: get_model(a.against)}
        p50s = {k: [] for k in models}
        for _ in range(5):  # in turns: a drift of the machine's speed slows both alike
            for k, m in models.items(): p50s[k].append(percentiles(lambda: predict(image, m), 200)[0])
        mine, theirs = (statistics.median(v) for v in p50s.values())
        print(f'predict p50, 5 rounds in turns: shipped {mine:.2f} ms, {a.against} {theirs:.2f} ms: {mine / theirs:.2f}x')


if __name__ == '__main__': main()

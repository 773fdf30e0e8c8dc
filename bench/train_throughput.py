"""Training throughput of the custom CNN: fastai over JPEGs, over the tensor cache, with torch.compile, and a bare PyTorch loop, in one run.

    python bench/train_throughput.py [--data PATH] [--bs 64 512] [--max-per-class 80] [--epochs 5] [--json PATH]

For each batch size, training images/s of:
- jpeg:           fastai `DataBlock` decoding JPEGs every batch (`get_dls(cache=False)`, `--workers` loader processes)
- cached:         the same over the uint8 tensor cache on the device (`get_dls(cache=True)`, `TensorDL`)
- cached+compile: the same with `torch.compile` (by default on a GPU only)
- cached-studio:  with `--studio yes`, the cached set-up without `FruitAugment`'s photo faults (the previous recipe), to
                  show what the faults cost
- ..., compiled augment: with `--compiled-augment yes`, the recipe with `FruitAugment` compiled too (an experiment)
- ..., fastai loss: with `--fastai-loss yes`, the recipe with fastai's smoothed loss (copied to the host each batch)
                  instead of `DeviceLoss`, to show what keeping it on the device wins
- ..., CUDA graphs: with `--cuda-graphs yes`, the recipe with the model compiled in `torch.compile`'s 'reduce-overhead'
                  mode (its forward and backward kernels replayed as CUDA graphs, one launch each; an experiment: a
                  failure is printed and the bench goes on)
- bare, bare+compile: plain PyTorch on the same cached tensors doing the same work (a shuffled batch, `FruitAugment` with its photo faults,
  normalisation, forward, loss, backward, fused AdamW) without fastai: the ceiling for the recipe on this device
All use the recipe's precision (bf16 where supported) and channels-last. Each fastai set-up fits one epoch to warm up
(compilation, caches; jpeg excepted), then `--epochs` timed epochs (training phases only); the bare loop warms up, then
runs as many batches. Ratios are to jpeg and to the bare loop of the same batch size.
Below `--target` images/s on a GPU (or with `--explain yes`), it says where a batch's time goes: the wall time, the GPU's
kernel time (torch.profiler) and the CPU cost of the fastai loop alone (`bench/loop_overhead.py`'s method), and what
would close the gap.
"""
import argparse, collections, json, linecache, os, time, warnings
warnings.filterwarnings('ignore')
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fruit360.custom_cnn import CustomCNN
from fruit360.augment import FruitAugment
from fastai.torch_core import TensorImage
from fruit360.data import find_data
from fruit360.loaders import get_dls
from fruit360.images import STATS
from fruit360.training import DeviceLoss, fruit_learner, fused_adam, resolve_precision
from fastai.learner import AvgSmoothLoss
import loop_overhead  # bench/loop_overhead.py, beside this script

TARGET = 45_000  # training images/s of the custom CNN with the full recipe on an H100/H200 (issue 15)
HINTS = ['a larger batch: the same launches carry more images (compare the batch sizes above)',
         "CUDA graphs: torch.compile(mode='reduce-overhead') replays a step's kernels with one launch",
         "one fused augmentation kernel: FruitAugment's flips, rotation, zoom and lighting are dozens of small kernels per batch"]


class CompiledAugment(FruitAugment):
    "`FruitAugment` with its whole batch work (`batch`) compiled by `torch.compile` (an experiment beside the recipe: fewer, fused kernels)."
    def __init__(self, **kwargs): super().__init__(**kwargs); self.fn = torch.compile(self.batch)
    def encodes(self, x:TensorImage): return TensorImage(self.fn(x.as_subclass(torch.Tensor)))


def sync(device):
    "Wait for `device`'s queued work (a GPU's kernels run asynchronously)."
    if device.type == 'cuda': torch.cuda.synchronize(device)


def fastai_run(dls, epochs, precision, compile, warmup=True, fastai_loss=False, mode=None):
    "The `fruit_learner` of the custom CNN on `dls` and its training images/s over `epochs` epochs (after one to warm up); `fastai_loss`: fastai's smoothed loss, copied to the host each batch, instead of `DeviceLoss`; `mode`: compile the model in this `torch.compile` mode instead."
    model = CustomCNN(len(dls.vocab))
    if mode: model.compile(mode=mode)
    learn = fruit_learner(dls, model, precision=precision, compile=compile and not mode)
    if fastai_loss: learn.remove_cb(DeviceLoss); learn.recorder.smooth_loss = AvgSmoothLoss()
    if len(dls.train) == 0: raise ValueError(f'batch size {dls.bs} exceeds the {len(dls.train_ds)} training images: use a smaller --bs')
    with learn.no_logging(), learn.no_bar():
        if warmup: learn.fit(1)
        learn.fit(epochs)
    return learn, learn.throughput.images_per_s


def bare_images_per_s(dls, steps, precision, compile, warmup=5):
    "Images/s of a plain PyTorch training loop over `dls.train`'s cached tensors, doing the recipe's work per batch."
    (x, y), bs, device = dls.train.tensors(), dls.bs, dls.device
    model = CustomCNN(len(dls.vocab)).to(device).to(memory_format=torch.channels_last)
    if compile: model.compile()
    opt, aug = fused_adam(list(model.parameters())), FruitAugment()
    mean, std = (torch.tensor(s, device=device).view(1, 3, 1, 1) for s in STATS)
    bf16, per_epoch = resolve_precision(precision, device) == 'bf16', len(x) // bs
    def shuffled():
        while True: yield from torch.randperm(len(x), device=device)[:per_epoch * bs].view(per_epoch, bs)
    batches = shuffled()
    def step(idx):
        xb = aug(TensorImage(x[idx].float() / 255), split_idx=0).as_subclass(torch.Tensor)  # photo faults included, as in the recipe
        xb = ((xb - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16): loss = F.cross_entropy(model(xb).float(), y[idx])
        opt.zero_grad(); loss.backward(); opt.step()
    for _ in range(warmup): step(next(batches))
    sync(device); start = time.perf_counter()
    for _ in range(steps): step(next(batches))
    sync(device)
    return steps * bs / (time.perf_counter() - start)


class KernelTime(Callback):
    "The GPU's kernel time per training batch over one epoch, from torch.profiler."
    def before_train(self):
        self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]); self.prof.start()
    def after_train(self):
        sync(self.dls.device); self.prof.stop()
        gpu = [e for e in self.prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        self.ms = sum(e.time_range.elapsed_us() for e in gpu) / 1e3 / max(self.n_iter, 1)


class HostProfile(Callback):
    "One epoch of training under torch.profiler (host and GPU): per batch, the ops with the most host time of their own and the calls that wait for the GPU."
    WAITS = ('cudaStreamSynchronize', 'cudaDeviceSynchronize', 'cudaMemcpyAsync', 'aten::_local_scalar_dense', 'cudaLaunchKernel')
    def before_train(self):
        acts = [torch.profiler.ProfilerActivity.CPU] + [torch.profiler.ProfilerActivity.CUDA] * (self.dls.device.type == 'cuda')
        self.prof = torch.profiler.profile(activities=acts); self.prof.start()
    def after_train(self):
        sync(self.dls.device); self.prof.stop()
        n, avg = max(self.n_iter, 1), self.prof.key_averages()
        top = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
        self.top = [dict(op=e.key, calls=e.count / n, self_ms=e.self_cpu_time_total / 1e3 / n) for e in top]
        self.waits = {e.key: e.count / n for e in avg if e.key in self.WAITS}
        busy = sorted((e for e in avg if e.self_device_time_total > 0), key=lambda e: e.self_device_time_total, reverse=True)[:12]
        self.gpu_top = [dict(op=e.key, calls=e.count / n, gpu_ms=e.self_device_time_total / 1e3 / n) for e in busy]  # empty without a GPU


def sync_sites(learn, n=8) -> list:
    "Where (file:line) one epoch of `learn`'s training makes the host wait for the GPU, most frequent first, per batch (CUDA's sync debug mode)."
    seen = collections.Counter()
    torch.cuda.set_sync_debug_mode('warn')
    try:
        with warnings.catch_warnings(record=True) as caught, learn.no_logging(), learn.no_bar():
            warnings.simplefilter('always'); learn.fit(1)
    finally: torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if 'synchroniz' in str(w.message): seen[(w.filename, w.lineno)] += 1
    return [dict(site=f'{f}:{l}', per_batch=c / len(learn.dls.train), line=linecache.getline(f, l).strip()[:100])
            for (f, l), c in seen.most_common(n)]


def augment_ms(dls, bs, n=20) -> dict:
    "Milliseconds per call of `FruitAugment` on a cached batch of `bs` on `dls`'s device, with and without photo faults: the host's time to launch it, and launch plus the device's work."
    x = TensorImage(dls.train.tensors()[0][:bs].float() / 255)
    res = {}
    for name, aug in (('faults', FruitAugment()), ('studio', FruitAugment(p_photo=0.))):
        for _ in range(3): aug(x, split_idx=0)
        sync(dls.device); start = time.perf_counter()
        for _ in range(n): aug(x, split_idx=0)
        launch = time.perf_counter() - start; sync(dls.device)
        res[name] = dict(launch_ms=launch / n * 1e3, done_ms=(time.perf_counter() - start) / n * 1e3)
    return res


def explain(learn, data, bs, max_per_class, images_per_s) -> dict:
    "Where `learn`'s training batch goes: wall, GPU kernels (None without a GPU), the fastai loop's CPU cost alone, `FruitAugment` alone, the host's busiest ops and its waits for the GPU."
    gpu_ms, sites, hp = None, None, HostProfile()
    if learn.dls.device.type == 'cuda':
        kt = KernelTime()
        try:
            with learn.no_logging(), learn.no_bar(): learn.fit(1, cbs=kt)
            gpu_ms = kt.ms
        except Exception as e: print(f'  bs {bs}: the GPU kernel time could not be measured: {type(e).__name__}: {e}')
        try: sites = sync_sites(learn)
        except Exception as e: print(f'  bs {bs}: the sync sites could not be found: {type(e).__name__}: {e}')
    try:
        with learn.no_logging(), learn.no_bar(): learn.fit(1, cbs=hp)
    except Exception as e: print(f'  bs {bs}: the host profile failed: {type(e).__name__}: {e}')
    aug = augment_ms(learn.dls, bs)
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    try: cpu_ms = loop_overhead.fastai_ms(loop_overhead.shrunk_dls(data, bs, max_per_class, True))
    finally: torch.set_num_threads(threads)
    return dict(bs=bs, wall_ms=bs / images_per_s * 1e3, gpu_ms=gpu_ms, cpu_loop_ms=cpu_ms, augment=aug,
                host_top=getattr(hp, 'top', None), host_waits=getattr(hp, 'waits', None), gpu_top=getattr(hp, 'gpu_top', None),
                sync_sites=sites)


def add_ratios(rows: list, bs: int):
    "Give the `rows` of batch size `bs` their ratios to jpeg and to the fastest bare loop."
    mine = [r for r in rows if r['bs'] == bs]
    jpeg = next((r['images_per_s'] for r in mine if r['pipeline'] == 'jpeg'), None)  # None with --jpeg-epochs 0
    bare = max(r['images_per_s'] for r in mine if r['pipeline'].startswith('bare'))
    for r in mine: r.update(vs_jpeg=r['images_per_s'] / jpeg if jpeg else None, of_bare=r['images_per_s'] / bare)


def print_explanation(e: dict, recipe: str):
    "One line: where a batch's time goes."
    gpu = (f"GPU kernels {e['gpu_ms']:.2f} ms ({e['gpu_ms'] / e['wall_ms']:.0%} busy)" if e['gpu_ms'] is not None
           else 'GPU kernels: no GPU')
    print(f"  where a batch of {e['bs']} goes ({recipe}): {e['wall_ms']:.2f} ms wall; {gpu}; fastai loop's CPU cost alone {e['cpu_loop_ms']:.2f} ms "
          f"(bench/loop_overhead.py: allows {e['bs'] / e['cpu_loop_ms'] * 1e3:,.0f} images/s)")
    a = e['augment']
    print(f"    FruitAugment alone on this batch: {a['faults']['done_ms']:.2f} ms ({a['faults']['launch_ms']:.2f} ms to launch); "
          f"without photo faults {a['studio']['done_ms']:.2f} ms ({a['studio']['launch_ms']:.2f} ms to launch)")
    if e['host_top']:
        print('    host time of its own per batch: ' + '; '.join(f"{t['op']} {t['self_ms']:.2f} ms ({t['calls']:.0f}x)" for t in e['host_top']))
    if e['gpu_top']:
        print('    GPU time per batch by op: ' + '; '.join(f"{t['op'][:60]} {t['gpu_ms']:.2f} ms ({t['calls']:.0f}x)" for t in e['gpu_top']))
    if e['host_waits']: print('    calls per batch: ' + ', '.join(f'{k} {v:.1f}' for k, v in e['host_waits'].items()))
    for s in e['sync_sites'] or []: print(f"    waits for the GPU {s['per_batch']:.1f}x per batch at {s['site']}: {s['line']}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=None, help='Fruits-360 folder (default: $FRUIT360_DATA, else the cached download)')
    p.add_argument('--bs', type=int, nargs='+', default=[64, 512], help='batch sizes')
    p.add_argument('--max-per-class', type=int, default=80, help='images per class (0: all)')
    p.add_argument('--epochs', type=int, default=5, help='timed epochs of the cached set-ups')
    p.add_argument('--jpeg-epochs', type=int, default=1, help='timed epochs of the JPEG set-up (0: leave it out)')
    p.add_argument('--steps', type=int, default=None, help="timed steps of the bare loop (default: --epochs epochs' worth)")
    p.add_argument('--workers', type=int, default=os.cpu_count(), help='JPEG decoding processes')
    p.add_argument('--precision', default='auto')
    p.add_argument('--compile', choices=['auto', 'yes', 'no'], default='auto', help='add the compiled set-ups (auto: on a GPU)')
    p.add_argument('--target', type=float, default=TARGET, help='images/s the recipe should reach on a GPU')
    p.add_argument('--explain', choices=['auto', 'yes', 'no'], default='auto', help='where the time goes (auto: on a GPU below --target)')
    p.add_argument('--studio', choices=['yes', 'no'], default='no', help="add the cached set-up without photo faults (what they cost)")
    p.add_argument('--compiled-augment', choices=['yes', 'no'], default='no',
                   help='add the recipe with `FruitAugment` compiled too (on a GPU: fewer kernel launches from the host)')
    p.add_argument('--fastai-loss', choices=['yes', 'no'], default='no',
                   help="add the recipe with fastai's smoothed loss, copied to the host each batch (what `DeviceLoss` wins)")
    p.add_argument('--cuda-graphs', choices=['yes', 'no'], default='no',
                   help="add the recipe with the model compiled in 'reduce-overhead' mode (CUDA graphs; on a GPU: one launch per graph)")
    p.add_argument('--json', default=None, help='write the results here (rewritten after each set-up)')
    a = p.parse_args()
    data, mpc = find_data(a.data), a.max_per_class or None
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    compiles = [False, True] if (device.type == 'cuda' if a.compile == 'auto' else a.compile == 'yes') else [False]
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU, {os.cpu_count()} cores'
    res = dict(device=name, precision=resolve_precision(a.precision, device), target=a.target, rows=[], explain=[], hints=[])
    def save():
        if a.json: open(a.json, 'w').write(json.dumps(res, indent=1))
    def add(bs, pipeline, ips):
        res['rows'].append(dict(bs=bs, pipeline=pipeline, images_per_s=ips)); save()
        print(f'{bs:>6}  {pipeline:<30}{ips:>12,.0f}', flush=True)
    print(f'device: {name}; {res["precision"]}, channels-last; target {a.target:,.0f} training images/s', flush=True)
    print(f'{"bs":>6}  {"pipeline":<30}{"images/s":>12}', flush=True)
    recipe = 'cached+compile' if True in compiles else 'cached'  # the full recipe: what the target is about
    for bs in a.bs:
        dls = get_dls(data, bs=bs, max_per_class=mpc, device=device)
        res['n_train'] = len(dls.train_ds)
        for c in compiles:
            learn, ips = fastai_run(dls, a.epochs, a.precision, c); add(bs, 'cached' + '+compile' * c, ips)
        mine = next(r['images_per_s'] for r in res['rows'] if r['bs'] == bs and r['pipeline'] == recipe)  # the recipe at this batch size
        if a.fastai_loss == 'yes':
            add(bs, recipe + ', fastai loss', f_ips := fastai_run(dls, a.epochs, a.precision, recipe != 'cached', fastai_loss=True)[1])
            print(f"        DeviceLoss: the recipe {mine:,.0f} images/s, with fastai's loss copied to the host {f_ips:,.0f} ({mine / f_ips:.2f}x)", flush=True)
        if a.compiled_augment == 'yes':
            fused = get_dls(data, bs=bs, max_per_class=mpc, device=device, augment=[CompiledAugment()])
            add(bs, recipe + ', compiled augment', c_ips := fastai_run(fused, a.epochs, a.precision, recipe != 'cached')[1])
            print(f"        FruitAugment compiled too: {c_ips:,.0f} images/s against the recipe's {mine:,.0f} ({c_ips / mine:.2f}x)", flush=True)
        if a.cuda_graphs == 'yes':
            try:
                add(bs, recipe + ', CUDA graphs', g_ips := fastai_run(dls, a.epochs, a.precision, True, mode='reduce-overhead')[1])
                print(f"        CUDA graphs: {g_ips:,.0f} images/s against the recipe's {mine:,.0f} ({g_ips / mine:.2f}x)", flush=True)
            except Exception as e: print(f'        CUDA graphs failed at batch {bs}: {type(e).__name__}: {str(e)[:300]}', flush=True)
        if a.studio == 'yes':
            studio = get_dls(data, bs=bs, max_per_class=mpc, device=device, augment=[FruitAugment(p_photo=0.)])
            add(bs, 'cached-studio', s_ips := fastai_run(studio, a.epochs, a.precision, False)[1])
            cached = next(r['images_per_s'] for r in res['rows'] if r['bs'] == bs and r['pipeline'] == 'cached')
            print(f'        photo faults: the cached set-up trains at {cached / s_ips:.2f}x the speed without them', flush=True)
        if a.jpeg_epochs > 0:
            jpeg = get_dls(data, bs=bs, max_per_class=mpc, device=device, cache=False, num_workers=a.workers)
            add(bs, 'jpeg', fastai_run(jpeg, a.jpeg_epochs, a.precision, False, warmup=False)[1])
        steps = a.steps or a.epochs * (len(dls.train_ds) // bs)
        for c in compiles: add(bs, 'bare' + '+compile' * c, bare_images_per_s(dls, steps, a.precision, c))
        add_ratios(res['rows'], bs); save()
        ips = next(r['images_per_s'] for r in res['rows'] if r['bs'] == bs and r['pipeline'] == recipe)
        if a.explain == 'yes' or (a.explain == 'auto' and device.type == 'cuda' and ips < a.target):
            e = explain(learn, data, bs, mpc, ips)
            res['explain'].append(e); res['hints'] = HINTS; save(); print_explanation(e, recipe)
    print(f'\n{"bs":>6}  {"pipeline":<30}{"images/s":>12}{"vs jpeg":>10}{"of bare":>10}')
    for r in res['rows']:
        vs = f"{r['vs_jpeg']:>9.1f}x" if r['vs_jpeg'] else f"{'-':>10}"
        print(f"{r['bs']:>6}  {r['pipeline']:<30}{r['images_per_s']:>12,.0f}{vs}{r['of_bare']:>10.0%}")
    best = max(r['images_per_s'] for r in res['rows'] if r['pipeline'] == recipe)
    res['recipe_best'] = best; save()
    print(f"the recipe ({recipe}) at its best: {best:,.0f} training images/s, {'meets' if best >= a.target else 'short of'} "
          f"the target {a.target:,.0f}")
    if res['explain']: print('what would close the gap:\n' + '\n'.join(f'  - {h}' for h in HINTS))

if __name__ == '__main__': main()

"""Training throughput of the custom CNN: the plain fastai JPEG pipeline vs the tensor cache, in one run.

    python bench/train_throughput.py [--data PATH] [--bs 64] [--max-per-class 60] [--epochs 2]

Prints images/s of three set-ups on the same device, and the ratios:
- jpeg:   fastai DataBlock decoding JPEGs every batch (`get_dls(cache=False)`, DataLoader workers = cores)
- cached: the same DataBlock over the uint8 tensor cache on the device (`get_dls(cache=True)`, `TensorDL`)
- bare:   the network alone on one batch already on the device (no data loading, no fastai): the ceiling
All three use the training recipe's precision (bf16 where supported), channels-last and, on a GPU, torch.compile.
The last epoch of each is timed (the first one warms up compilation and the caches).
"""
import argparse, os, time, warnings
import torch
from fruit360.custom_cnn import CustomCNN
from fruit360.data import find_data, get_dls
from fruit360.training import fruit_learner, resolve_precision

warnings.filterwarnings('ignore')


def fastai_images_per_s(dls, epochs, precision, compile):
    "Training images/s of the last of `epochs` epochs of the custom CNN on `dls` through fastai."
    learn = fruit_learner(dls, CustomCNN(len(dls.vocab)), precision=precision, compile=compile)
    with learn.no_logging(), learn.no_bar():
        for _ in range(epochs): learn.fit(1)
    return learn.throughput.images_per_s


def bare_images_per_s(n_classes, bs, device, precision, compile, steps=30):
    "Images/s of forward, backward and Adam steps on one batch already on `device`."
    model = CustomCNN(n_classes).to(device).to(memory_format=torch.channels_last)
    if compile: model.compile()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(bs, 3, 100, 100, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (bs,), device=device)
    bf16 = resolve_precision(precision, device) == 'bf16'
    def step():
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16): loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(); loss.backward(); opt.step()
    for _ in range(5): step()
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    sync(); start = time.perf_counter()
    for _ in range(steps): step()
    sync()
    return steps * bs / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=None)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--max-per-class', type=int, default=60, help='images per class (None: all)')
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--precision', default='auto')
    p.add_argument('--compile', choices=['auto', 'yes', 'no'], default='auto')
    a = p.parse_args()
    data = find_data(a.data)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    compile = device.type == 'cuda' if a.compile == 'auto' else a.compile == 'yes'
    kw = dict(bs=a.bs, max_per_class=a.max_per_class, device=device)
    jpeg = fastai_images_per_s(get_dls(data, cache=False, num_workers=os.cpu_count(), **kw), a.epochs, a.precision, compile)
    dls = get_dls(data, cache=True, **kw)
    cached = fastai_images_per_s(dls, a.epochs, a.precision, compile)
    bare = bare_images_per_s(len(dls.vocab), a.bs, device, a.precision, compile)
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU, {os.cpu_count()} cores'
    print(f'device: {name}; batch {a.bs}; {len(dls.train_ds):,} training images; compile={compile}; {resolve_precision(a.precision, device)}')
    print(f'{"pipeline":<10}{"images/s":>12}{"vs jpeg":>10}')
    for label, v in [('jpeg', jpeg), ('cached', cached), ('bare', bare)]:
        print(f'{label:<10}{v:>12,.0f}{v / jpeg:>9.2f}x')


if __name__ == '__main__': main()

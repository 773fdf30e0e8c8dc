"""CPU cost of one training step of the fastai recipe when the network costs nothing: the ceiling it puts on a GPU.

    python bench/loop_overhead.py [--data PATH] [--bs 64] [--max-per-class 100]

On a GPU the network's kernels run asynchronously, so images/s is bounded by whichever is slower: the GPU's
work, or the Python that launches it (fastai's loop, its callbacks, the batch transforms, the optimiser).
This script measures the second part on the CPU, with the cached images shrunk to 8x8 and a one-layer
network so that arithmetic is negligible, one thread. It prints milliseconds per batch for:
- the fastai training loop with the recipe's callbacks and augmentation (`fruit_learner`, as `fruit360 train`);
- the same without augmentation;
- the loader with its batch transforms alone, and each batch transform alone;
- one step of the recipe's optimiser (`fused_adam`) over the custom CNN's parameters (its arithmetic included);
- a bare PyTorch loop (slice, scale, forward, loss, backward, step) for comparison;
and `bs / ms` as the images/s that this cost alone allows.
"""
import argparse, itertools, time, warnings
warnings.filterwarnings('ignore')
import torch
from torch import nn
from fruit360.custom_cnn import CustomCNN
from fruit360.data import find_data
from fruit360.loaders import get_dls
from fruit360.training import fruit_learner, fused_adam


class Negligible(nn.Module):
    "A network whose arithmetic costs nothing: the mean colour of the image into one linear layer."
    def __init__(self, n_classes): super().__init__(); self.fc = nn.Linear(3, n_classes)
    def forward(self, x): return self.fc(x.mean((2, 3)))


def shrunk_dls(data, bs, max_per_class, augment):
    "The recipe's `DataLoaders` on the CPU, with the cached images cut to 8x8."
    dls = get_dls(data, bs=bs, max_per_class=max_per_class, augment=augment, device='cpu')
    for dl in (dls.train, dls.valid):
        x, y = dl.tensors()
        dl._xy = x[:, :, :8, :8].contiguous(), y
    return dls


def fastai_ms(dls, repeats=3):
    "Milliseconds per training batch of `fruit_learner` on `dls` (best of `repeats` epochs)."
    learn = fruit_learner(dls, Negligible(len(dls.vocab)), precision='fp32')
    best = float('inf')
    with learn.no_logging(), learn.no_bar():
        learn.fit(1)  # warm-up
        for _ in range(repeats):
            learn.fit(1)
            best = min(best, learn.throughput.seconds / len(dls.train) * 1e3)
    return best


def timed_ms(f, n=100):
    "Milliseconds per call of `f` (after 5 warm-up calls)."
    for _ in range(5): f()
    start = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - start) / n * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=None)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--max-per-class', type=int, default=100)
    a = p.parse_args()
    torch.set_num_threads(1)
    data = find_data(a.data)
    dls = shrunk_dls(data, a.bs, a.max_per_class, True)
    rows = [('fastai loop, recipe (augmentation on)', fastai_ms(dls)),
            ('fastai loop, no augmentation', fastai_ms(shrunk_dls(data, a.bs, a.max_per_class, False)))]
    dl = dls.train
    rows.append(('loader + batch transforms alone', timed_ms(lambda: [None for _ in dl], 3) / len(dl)))
    xb, yb = next(dl.create_batches(range(a.bs)))
    for tfm in dl.after_batch.fs:
        rows.append((f'  {type(tfm).__name__}', timed_ms(lambda: tfm(xb, split_idx=0))))
        xb = tfm(xb, split_idx=0)
    model = CustomCNN(len(dls.vocab))
    for q in model.parameters(): q.grad = torch.randn_like(q)
    rows.append(("optimiser step (fused_adam), custom CNN's parameters", timed_ms(fused_adam(list(model.parameters()), 1e-3).step)))
    net, (x, y) = Negligible(len(dls.vocab)), dl.tensors()
    opt, starts = torch.optim.Adam(net.parameters(), 1e-3), itertools.cycle(range(0, len(x) - a.bs, a.bs))
    def bare_step():
        i = next(starts)
        loss = nn.functional.cross_entropy(net(x[i:i + a.bs].float() / 255), y[i:i + a.bs])
        opt.zero_grad(); loss.backward(); opt.step()
    rows.append(('bare PyTorch loop', timed_ms(bare_step)))
    print(f'CPU cost per batch of {a.bs} with negligible arithmetic (1 thread, {len(dl) * a.bs:,} images of 8x8)')
    print(f'{"":<56}{"ms/batch":>10}{"images/s it allows":>20}')
    for name, ms in rows: print(f'{name:<56}{ms:>10.2f}{a.bs / ms * 1e3:>20,.0f}')


if __name__ == '__main__': main()

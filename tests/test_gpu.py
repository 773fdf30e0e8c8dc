"""The CUDA paths of training, each checked against the CPU path on the same batch and seed (marker `gpu`).

They skip without a CUDA GPU; `make gpu-check` runs them on one (`pytest -m gpu`). `FRUIT360_TEST_DEVICE=cpu`
runs them against the CPU itself, which checks the tests' own logic on a machine without a GPU.
"""
import copy, os, warnings
import pytest, torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from fastai.callback.core import Callback
from fastai.torch_core import TensorImage, set_seed
from fruit360.custom_cnn import CustomCNN
from fruit360 import augment
from fruit360.augment import FruitAugment
from fruit360.loaders import get_dls
from fruit360.training import BF16, fruit_learner, fused_adam

DEVICE = torch.device(os.environ.get('FRUIT360_TEST_DEVICE', 'cuda'))
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(DEVICE.type == 'cuda' and not torch.cuda.is_available(),
                                                  reason='needs a CUDA GPU: make gpu-check runs these on one')]


def dls_on(device, data, **kw):
    "The recipe's `DataLoaders` on `device`, built after the same seed (same split, same shuffling)."
    set_seed(0)
    return get_dls(data, device=device, **{'bs': 8, 'max_per_class': 4, 'augment': False, **kw})


def test_the_tensor_cache_on_the_gpu_holds_and_serves_what_the_cpu_does(data_path):
    cpu, dev = dls_on('cpu', data_path), dls_on(DEVICE, data_path)
    (xc, yc), (xd, yd) = cpu.train.tensors(), dev.train.tensors()
    assert dev.train.tensors() is dev.train.tensors()  # decoded and moved once, not again each epoch
    assert xd.device.type == DEVICE.type and xd.dtype == torch.uint8
    assert torch.equal(xd.cpu(), xc) and torch.equal(yd.cpu(), yc)
    (bc, lc), (bd, ld) = cpu.train.one_batch(), dev.train.one_batch()  # shuffled, then IntToFloatTensor and Normalize
    assert bd.device.type == DEVICE.type
    torch.testing.assert_close(bd.cpu().as_subclass(torch.Tensor), bc.as_subclass(torch.Tensor))
    assert torch.equal(ld.cpu(), lc)


class DrawOnCPU(TorchFunctionMode):
    "Draw `torch.rand`, `torch.randn`, `torch.randn_like` and `Tensor.uniform_` numbers on the CPU and move them: one seed then gives the same draws on any device."
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.rand or func is torch.randn:
            device = kwargs.pop('device', None)
            return func(*args, **kwargs).to(device)
        if func is torch.randn_like:
            return torch.randn(args[0].shape, dtype=args[0].dtype).to(args[0].device)
        if func is torch.Tensor.uniform_ and args[0].device.type != 'cpu':
            t = args[0]
            return t.copy_(torch.empty(t.shape, dtype=t.dtype).uniform_(*args[1:], **kwargs))
        return func(*args, **kwargs)


def augmented(x, seed=0):
    "`FruitAugment` without photo faults (geometry and lighting) applied to the training batch `x`, its random parameters drawn on the CPU after `seed`."
    with DrawOnCPU():
        torch.manual_seed(seed)
        return FruitAugment(faults=())(TensorImage(x), split_idx=0).as_subclass(torch.Tensor)


def test_fruit_augment_on_the_gpu_moves_and_relights_images_as_on_the_cpu(data_path):
    x = dls_on('cpu', data_path).train.tensors()[0][:32].float() / 255
    on_cpu, on_dev = augmented(x), augmented(x.to(DEVICE))
    assert on_dev.device.type == DEVICE.type
    assert (on_cpu - x).abs().mean() > 0.01  # it did change the images
    torch.testing.assert_close(on_dev.cpu(), on_cpu, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(augmented(x, seed=1), on_cpu)  # and another seed gives other parameters


@pytest.mark.parametrize('fault', list(augment.PHOTO_FAULTS))
def test_each_photo_fault_on_the_gpu_is_the_cpu_fault(data_path, fault):
    x = dls_on('cpu', data_path).train.tensors()[0][:32].float() / 255
    def faulted(x):
        with DrawOnCPU(), torch.backends.cudnn.flags(allow_tf32=False):  # the blur's convolution in full float32
            torch.manual_seed(0)
            return augment.PHOTO_FAULTS[fault](x)
    on_cpu, on_dev = faulted(x), faulted(x.to(DEVICE))
    assert on_dev.device.type == DEVICE.type
    assert (on_cpu - x).abs().mean() > 1e-3  # the fault did change the images
    torch.testing.assert_close(on_dev.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


def test_on_some_on_the_gpu_changes_the_images_the_cpu_changes(data_path):
    x = dls_on('cpu', data_path).train.tensors()[0][:32].float() / 255
    def some(x):
        with DrawOnCPU():
            torch.manual_seed(0)
            return augment.on_some(x, 0.5, lambda t: 1 - t)  # the CPU computes the chosen images only, an accelerator all of them
    on_cpu, on_dev = some(x), some(x.to(DEVICE)).cpu()
    changed = (on_cpu != x).flatten(1).any(1)
    assert 0 < changed.sum() < len(x)
    assert torch.equal(on_dev, on_cpu)


def test_bf16_loss_on_the_gpu_is_the_fp32_loss_on_the_cpu(data_path):
    cpu, dev = dls_on('cpu', data_path, bs=8, max_per_class=8), dls_on(DEVICE, data_path, bs=8, max_per_class=8)
    torch.manual_seed(0)
    fp32 = fruit_learner(cpu, CustomCNN(len(cpu.vocab)), precision='fp32')
    with fp32.no_bar(), fp32.no_logging(): fp32.fit(3, 1e-2)  # trained a little: confident, varied predictions
    bf16 = fruit_learner(dev, copy.deepcopy(fp32.model), precision='bf16')
    assert any(isinstance(cb, BF16) for cb in bf16.cbs) and not any(isinstance(cb, BF16) for cb in fp32.cbs)
    with fp32.no_bar(), bf16.no_bar():
        (pc, _), (pd, _) = fp32.get_preds(dl=cpu.valid), bf16.get_preds(dl=dev.valid)
        loss_c, loss_d = fp32.validate()[0], bf16.validate()[0]
    assert pc.max(1).values.mean() > 2 / len(cpu.vocab)  # far from uniform, so the comparison means something
    assert loss_d == pytest.approx(loss_c, rel=5e-2)
    torch.testing.assert_close(pd, pc, atol=5e-2, rtol=0)
    assert (pd.argmax(1) == pc.argmax(1)).float().mean() >= 0.9


def test_compiled_training_step_on_the_gpu_matches_eager():
    torch.manual_seed(0)
    eager = CustomCNN(10, dropout=0.).to(DEVICE).to(memory_format=torch.channels_last)  # no dropout: no random masks to differ
    compiled = copy.deepcopy(eager); compiled.compile()
    x = torch.randn(32, 3, 100, 100, device=DEVICE).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,), device=DEVICE)
    outs = []
    for m in (eager, compiled):
        with torch.autocast(DEVICE.type, torch.bfloat16): logits = m(x).float()
        loss = F.cross_entropy(logits, y); loss.backward()
        outs.append((logits.detach(), loss.item(), torch.cat([p.grad.flatten() for p in m.parameters()])))
    (le, lossE, ge), (lc, lossC, gc) = outs
    assert lossC == pytest.approx(lossE, rel=1e-2)
    torch.testing.assert_close(lc, le, atol=5e-2, rtol=5e-2)
    assert F.cosine_similarity(gc, ge, dim=0) > 0.99


def test_fused_adamw_steps_on_the_gpu_match_the_cpu():
    gen = torch.Generator().manual_seed(0)
    cpu = [torch.randn(64, 32, generator=gen, requires_grad=True), torch.randn(32, generator=gen, requires_grad=True)]
    dev = [p.detach().to(DEVICE).requires_grad_() for p in cpu]
    start = [p.detach().clone() for p in cpu]
    opt_c, opt_d = fused_adam(cpu), fused_adam(dev)
    assert opt_d.opt.defaults['fused']
    for _ in range(3):
        for pc, pd in zip(cpu, dev):
            pc.grad = torch.randn(pc.shape, generator=gen); pd.grad = pc.grad.to(DEVICE)
        opt_c.step(); opt_d.step()
    assert not any(torch.allclose(p, p0) for p, p0 in zip(cpu, start))  # the steps did move the parameters
    for pc, pd in zip(cpu, dev): torch.testing.assert_close(pd.detach().cpu(), pc.detach(), rtol=1e-5, atol=1e-6)


class SyncsInBatches(Callback):
    "The host's waits for the GPU among `log` (warnings of CUDA's sync debug mode) from a fit's first training batch to the end of its training phase."
    order, n, counting = -100, 0, False  # its `after_train` first: after every callback's `after_batch` of the last batch
    def __init__(self, log): self.log = log
    def before_batch(self):
        if not self.counting: self.log.clear(); self.counting = True  # the epoch's set-up before it (one index copy) is no batch's
    def after_train(self):
        self.n += sum('synchroniz' in str(w.message) for w in self.log); self.counting = False


def test_training_batches_on_the_gpu_never_wait_for_it(data_path):
    if DEVICE.type != 'cuda': pytest.skip("CUDA's sync debug mode")
    dls = dls_on(DEVICE, data_path, augment=True)  # the recipe's batches: photo faults on a share
    learn = fruit_learner(dls, CustomCNN(len(dls.vocab)))
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=(syncs := SyncsInBatches(log)))
        finally: torch.cuda.set_sync_debug_mode(0)
    assert syncs.n == 0, f'{syncs.n} waits in {len(dls.train)} training batches'  # the host stays ahead of the GPU
    assert {v.device.type for v in learn.recorder.losses} == {'cpu'} and len(learn.recorder.losses) == len(dls.train)

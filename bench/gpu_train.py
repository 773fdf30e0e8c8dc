"""A short real training of the custom CNN with the full recipe, on the GPU when there is one: the GPU check's last stage.

    python bench/gpu_train.py [--data PATH] [--epochs 10] [--bs 64] [--max-per-class N] [--json PATH]

Trains with `fruit_learner` and `fit_fruit` (tensor cache, augmentation, bf16 where supported, channels-last, fused AdamW,
1cycle, `torch.compile` on a GPU), without MLflow, then evaluates on Test. Prints and writes (`--json`) the wall time
of the fit, training images/s, and the Test accuracy and macro-F1.
"""
import argparse, json, os, time, warnings
warnings.filterwarnings('ignore')
import torch
from fastai.torch_core import set_seed
from fruit360.custom_cnn import CustomCNN
from fruit360.data import find_data
from fruit360.loaders import get_dls
from fruit360.training import evaluate, fit_fruit, fruit_learner, resolve_precision


def device_name(device: torch.device) -> str:
    "The GPU's model, or the CPU and its cores."
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {os.cpu_count()} cores'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=None, help='Fruits-360 folder (default: $FRUIT360_DATA)')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--max-per-class', type=int, default=None, help='images per class and split (default: all)')
    p.add_argument('--seed', type=int, default=42)
    p.add_argument('--json', default=None, help='write the results here')
    a = p.parse_args()
    set_seed(a.seed, reproducible=True)
    dls = get_dls(find_data(a.data), bs=a.bs, seed=a.seed, max_per_class=a.max_per_class)
    device = dls.device
    compile = device.type == 'cuda'
    learn = fruit_learner(dls, CustomCNN(len(dls.vocab)), compile=compile)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): history = fit_fruit(learn, a.epochs)
    wall = time.perf_counter() - start
    for h in history: print('  ' + ', '.join(f'{k} {v:.4g}' for k, v in h.items()))
    with learn.no_bar(): test = evaluate(learn, dls.test)
    res = dict(device=device_name(device), precision=resolve_precision('auto', device), compile=compile, epochs=a.epochs,
               bs=a.bs, n_classes=len(dls.vocab), n_train=len(dls.train_ds), n_test=test['n_images'], wall_time_s=round(wall, 2),
               train_images_per_s=round(learn.throughput.images_per_s, 1),
               test=dict(accuracy=test['accuracy'], f1_macro=test['f1_macro']), history=history)
    print(f"{res['device']}, {res['precision']}, compile={compile}: {a.epochs} epochs of {res['n_train']:,} images "
          f"(batch {a.bs}) in {wall:.1f} s{' (compilation included)' * compile}, {res['train_images_per_s']:,.0f} training images/s; "
          f"Test ({res['n_test']:,} images): accuracy {test['accuracy']:.4f}, macro-F1 {test['f1_macro']:.4f}")
    if a.json: open(a.json, 'w').write(json.dumps(res, indent=1))


if __name__ == '__main__': main()

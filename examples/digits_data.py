"""The 8x8 digits data set that ships with scikit-learn, split once and for all.

Shared by the digits examples so that both train and test on the same samples.
"""
from __future__ import annotations

import numpy as np

import gradc
from gradc.utils.data import DataLoader, TensorDataset


def load_digits_split(test_fraction: float = 0.2, seed: int = 0):
    """(train, test) TensorDatasets of images in [0, 1] (N, 1, 8, 8) and int64 labels."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]

    def dataset(idx):
        return TensorDataset(gradc.from_numpy(images[idx].copy()), gradc.from_numpy(labels[idx].astype(np.int64)))

    return dataset(train), dataset(test)


def accuracy(model, data: TensorDataset, batch_size: int = 256) -> float:
    """Fraction of `data` that `model` classifies correctly (eval mode, no grad)."""
    model.eval()
    correct = 0
    with gradc.no_grad():
        for images, labels in DataLoader(data, batch_size=batch_size):
            correct += int((model(images).argmax(dim=1) == labels).sum().item())
    model.train()
    return correct / len(data)


def train_and_report(args, model, optimizer, train: TensorDataset, test: TensorDataset, timed_steps: int) -> None:
    """The digits examples' run: with --compile, eager and compiled step times first (see
    `train_loop.compare_compiled`; timed on full batches only, a partial last batch being a
    new shape), then `args.epochs` of minibatches of 64, then the test accuracy."""
    import time

    from train_loop import classifier_loss, compare_compiled, train_classifier

    loss_fn = classifier_loss(model)
    start = time.perf_counter()
    if args.compile:
        steps = min(timed_steps, args.max_batches or timed_steps)
        timing = DataLoader(train, batch_size=64, shuffle=True, drop_last=True)
        loss_fn = compare_compiled(model, loss_fn, optimizer, timing, steps)
    train_classifier(model, DataLoader(train, batch_size=64, shuffle=True), optimizer, args.epochs,
                     args.max_batches, loss_fn)
    print(f"test accuracy: {accuracy(model, test):.4f} ({time.perf_counter() - start:.1f} s)")
    if args.save:
        gradc.save(model.state_dict(), args.save)
        print(f"saved the model's state dict to {args.save}")

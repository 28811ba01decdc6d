"""The training loop the examples share: epochs of minibatches with a progress bar."""
from __future__ import annotations

import argparse

import gradc.nn.functional as F


def example_args(description: str, epochs: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--max-batches", type=int, default=None,
                        help="stop each epoch after this many batches (for smoke tests)")
    return parser.parse_args()


def progress(iterable, **kwargs):
    """tqdm when installed (the `examples` extra), else the plain iterable."""
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, **kwargs)


def train_classifier(model, loader, optimizer, epochs: int, max_batches: int | None = None) -> None:
    """Minimise cross-entropy; the bar shows the running loss."""
    for epoch in range(epochs):
        bar = progress(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for step, (inputs, labels) in enumerate(bar):
            if max_batches is not None and step >= max_batches:
                break
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.4f}")

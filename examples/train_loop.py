"""The training loop the examples share: epochs of minibatches with a progress bar."""
from __future__ import annotations

import argparse
import copy
import itertools
import time
from collections.abc import Callable

import gradc.nn.functional as F

# loss_fn(inputs, labels) -> scalar loss tensor of the model being trained
LossFn = Callable


def example_args(description: str, epochs: int, compile_option: bool = False,
                 save_option: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--max-batches", type=int, default=None,
                        help="stop each epoch after this many batches (for smoke tests)")
    if compile_option:
        parser.add_argument("--compile", action="store_true",
                            help="compile the training step (forward + loss) with gradc.compile")
    if save_option:
        parser.add_argument("--save", metavar="FILE", help="save the trained model's state dict there (gradc.save)")
    return parser.parse_args()


def progress(iterable, **kwargs):
    """tqdm when installed (the `examples` extra), else the plain iterable."""
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, **kwargs)


def classifier_loss(model) -> LossFn:
    """The cross-entropy of `model`'s logits: the function the training step minimises."""
    return lambda inputs, labels: F.cross_entropy(model(inputs), labels)


def train_step(loss_fn: LossFn, optimizer, inputs, labels):
    """One optimisation step; returns the loss (the optimizer always runs eagerly)."""
    loss = loss_fn(inputs, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def time_steps(loss_fn: LossFn, optimizer, loader, steps: int) -> float:
    """Mean seconds per training step over `steps` real steps (cycling over `loader`)."""
    batches = itertools.islice(itertools.cycle(loader), steps)
    start = time.perf_counter()
    for inputs, labels in batches:
        train_step(loss_fn, optimizer, inputs, labels)
    return (time.perf_counter() - start) / steps


def compare_compiled(model, loss_fn: LossFn, optimizer, loader, steps: int) -> LossFn:
    """Time `steps` eager training steps, then compile `loss_fn` and time as many compiled
    ones (after one untimed call that captures and builds), print both, and return the
    compiled loss function. The model, optimizer and random generator are restored
    afterwards, so the training that follows starts where an eager run starts. `loader`
    should give batches of one shape (a new shape is a new compile)."""
    import gradc

    weights = {name: t.clone() for name, t in model.state_dict().items()}
    state = copy.deepcopy(optimizer.state_dict())
    generator = gradc.default_generator().bit_generator.state
    eager = time_steps(loss_fn, optimizer, loader, steps)
    compiled_fn = gradc.compile(loss_fn)
    start = time.perf_counter()
    train_step(compiled_fn, optimizer, *next(iter(loader)))
    first = time.perf_counter() - start
    compiled = time_steps(compiled_fn, optimizer, loader, steps)
    print(f"eager step: {eager * 1e3:.3f} ms, compiled step: {compiled * 1e3:.3f} ms "
          f"({eager / compiled:.2f}x, mean over {steps} steps; first compiled call {first:.2f} s)")
    model.load_state_dict(weights)
    optimizer.load_state_dict(state)
    gradc.default_generator().bit_generator.state = generator
    return compiled_fn


def train_classifier(model, loader, optimizer, epochs: int, max_batches: int | None = None,
                     loss_fn: LossFn | None = None) -> None:
    """Minimise cross-entropy (or `loss_fn`); the bar shows the running loss."""
    loss_fn = loss_fn or classifier_loss(model)
    for epoch in range(epochs):
        bar = progress(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for step, (inputs, labels) in enumerate(bar):
            if max_batches is not None and step >= max_batches:
                break
            loss = train_step(loss_fn, optimizer, inputs, labels)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.4f}")

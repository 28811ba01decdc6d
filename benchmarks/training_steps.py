"""Training steps of the three example models: eager against `gradc.compile`, side by side.

For each model (the digits MLP, the digits CNN with batch norm and dropout, the char
transformer), two copies start from the same weights; one trains eagerly, the other with
its loss function compiled (forward, loss and backward; the optimizer stays eager).
Blocks of steps alternate between the two so machine noise hits both alike; each cell
is the median over blocks of the mean step time. The first compiled call (capture and
C build, or a cache hit) is timed separately. Inputs are random batches of the examples'
shapes, so no data set is needed.

    python benchmarks/training_steps.py [--blocks 5] [--steps 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import gradc
import gradc.nn.functional as F
from gradc import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from char_transformer import CharTransformer  # noqa: E402


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10))


def digits_batch(rng):
    return (gradc.tensor(rng.standard_normal((64, 1, 8, 8)).astype(np.float32)),
            gradc.tensor(rng.integers(0, 10, 64)))


def text_batch(rng):
    window = rng.integers(0, 60, (32, 65))
    return gradc.tensor(window[:, :-1]), gradc.tensor(window[:, 1:])


def classifier(model):
    return lambda x, y: F.cross_entropy(model(x), y)


def language_model(model):
    return lambda x, y: F.cross_entropy(model(x).reshape(-1, 60), y.reshape(-1))


CASES = [("digits MLP", mlp, classifier, digits_batch, gradc.optim.Adam),
         ("digits CNN", cnn, classifier, digits_batch, gradc.optim.AdamW),
         ("char transformer", lambda: CharTransformer(60, 64), language_model, text_batch, gradc.optim.AdamW)]


def step(loss_fn, optimizer, batch) -> None:
    loss = loss_fn(*batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def block(loss_fn, optimizer, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        step(loss_fn, optimizer, batch)
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'model':<18} {'eager ms':>10} {'compiled ms':>12} {'speed-up':>9} {'first call s':>13}")
    for name, make, loss_of, batch_of, optim in CASES:
        gradc.manual_seed(0)
        eager_model = make()
        gradc.manual_seed(0)
        compiled_model = make()
        eager_fn, compiled_fn = loss_of(eager_model), gradc.compile(loss_of(compiled_model))
        eager_opt, compiled_opt = optim(eager_model.parameters()), optim(compiled_model.parameters())
        batches = [batch_of(rng) for _ in range(args.steps)]
        start = time.perf_counter()
        step(compiled_fn, compiled_opt, batches[0])
        first = time.perf_counter() - start
        step(eager_fn, eager_opt, batches[0])
        eager, compiled = [], []
        for _ in range(args.blocks):
            eager.append(block(eager_fn, eager_opt, batches))
            compiled.append(block(compiled_fn, compiled_opt, batches))
        e, c = statistics.median(eager), statistics.median(compiled)
        print(f"{name:<18} {e * 1e3:>10.2f} {c * 1e3:>12.2f} {e / c:>8.2f}x {first:>13.2f}")
    print(f"\n{gradc.compiler.counters}")


if __name__ == "__main__":
    main()

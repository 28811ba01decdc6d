"""An MLP on scikit-learn's 8x8 digits: >= 95% test accuracy in seconds.

Run: python examples/digits_mlp.py [--epochs N] [--compile]

With --compile the training step (forward and loss, with its backward) runs as C built
by gradc.compile; the optimizer stays eager. The run first times a few eager steps and
then the compiled ones, so both per-step times come from the same process.
"""
import time

from digits_data import accuracy, load_digits_split
from train_loop import classifier_loss, compare_compiled, example_args, train_classifier

import gradc
from gradc import nn
from gradc.utils.data import DataLoader

TIMED_STEPS = 50


def main() -> None:
    args = example_args(__doc__.splitlines()[0], epochs=30, compile_option=True)
    gradc.manual_seed(0)
    train, test = load_digits_split()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    optimizer = gradc.optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(train, batch_size=64, shuffle=True)
    loss_fn = classifier_loss(model)
    start = time.perf_counter()
    if args.compile:
        steps = min(TIMED_STEPS, args.max_batches or TIMED_STEPS)
        # full batches only: a partial last batch is a new shape, hence a second compile
        timing = DataLoader(train, batch_size=64, shuffle=True, drop_last=True)
        loss_fn = compare_compiled(model, loss_fn, optimizer, timing, steps)
    train_classifier(model, loader, optimizer, args.epochs, args.max_batches, loss_fn)
    print(f"test accuracy: {accuracy(model, test):.4f} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

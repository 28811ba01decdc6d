"""A small CNN on scikit-learn's 8x8 digits: >= 97% test accuracy.

Run: python examples/digits_cnn.py [--epochs N] [--compile]

With --compile the training step (forward with batch norm's running statistics and
dropout, loss, and its backward) runs as C built by gradc.compile; the convolutions run
as extern steps (numpy's matmul) between the generated kernels. Eager and compiled step
times are printed from the same run.
"""
import time

from digits_data import accuracy, load_digits_split
from train_loop import classifier_loss, compare_compiled, example_args, train_classifier

import gradc
from gradc import nn
from gradc.utils.data import DataLoader

TIMED_STEPS = 30


def main() -> None:
    args = example_args(__doc__.splitlines()[0], epochs=20, compile_option=True)
    gradc.manual_seed(0)
    train, test = load_digits_split()
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10),
    )
    optimizer = gradc.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = classifier_loss(model)
    start = time.perf_counter()
    if args.compile:
        steps = min(TIMED_STEPS, args.max_batches or TIMED_STEPS)
        timing = DataLoader(train, batch_size=64, shuffle=True, drop_last=True)
        loss_fn = compare_compiled(model, loss_fn, optimizer, timing, steps)
    train_classifier(model, DataLoader(train, batch_size=64, shuffle=True), optimizer, args.epochs,
                     args.max_batches, loss_fn)
    print(f"test accuracy: {accuracy(model, test):.4f} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

"""An MLP on scikit-learn's 8x8 digits: >= 95% test accuracy in seconds, eager mode.

Run: python examples/digits_mlp.py [--epochs N]
"""
import time

from digits_data import accuracy, load_digits_split
from train_loop import example_args, train_classifier

import gradc
from gradc import nn
from gradc.utils.data import DataLoader


def main() -> None:
    args = example_args(__doc__.splitlines()[0], epochs=30)
    gradc.manual_seed(0)
    train, test = load_digits_split()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    optimizer = gradc.optim.Adam(model.parameters(), lr=2e-3)
    start = time.perf_counter()
    train_classifier(model, DataLoader(train, batch_size=64, shuffle=True), optimizer, args.epochs,
                     args.max_batches)
    print(f"test accuracy: {accuracy(model, test):.4f} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

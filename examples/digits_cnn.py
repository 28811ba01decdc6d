"""A small CNN on scikit-learn's 8x8 digits: >= 97% test accuracy, eager mode.

Run: python examples/digits_cnn.py [--epochs N]
"""
import time

from digits_data import accuracy, load_digits_split
from train_loop import example_args, train_classifier

import gradc
from gradc import nn
from gradc.utils.data import DataLoader


def main() -> None:
    args = example_args(__doc__.splitlines()[0], epochs=20)
    gradc.manual_seed(0)
    train, test = load_digits_split()
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10),
    )
    optimizer = gradc.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    start = time.perf_counter()
    train_classifier(model, DataLoader(train, batch_size=64, shuffle=True), optimizer, args.epochs,
                     args.max_batches)
    print(f"test accuracy: {accuracy(model, test):.4f} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

"""A small CNN on scikit-learn's 8x8 digits: >= 97% test accuracy.

Run: python examples/digits_cnn.py [--epochs N] [--compile] [--save FILE]

With --compile the training step (forward with batch norm's running statistics and
dropout, loss, and its backward) runs as C built by gradc.compile: im2col and col2im as
C template kernels, their matmuls as extern steps (numpy's BLAS) between the generated
kernels. Eager and compiled step times are printed from the same run.
"""

from digits_data import load_digits_split, train_and_report
from train_loop import example_args

import gradc
from gradc import nn

TIMED_STEPS = 30


def build_model() -> nn.Module:
    """The untrained network (`gradc export examples/digits_cnn.py:build_model --state FILE` loads the
    weights `--save FILE` wrote into it)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10),
    )


def main() -> None:
    args = example_args(__doc__.splitlines()[0], epochs=20, compile_option=True, save_option=True)
    gradc.manual_seed(0)
    train, test = load_digits_split()
    model = build_model()
    optimizer = gradc.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    train_and_report(args, model, optimizer, train, test, TIMED_STEPS)


if __name__ == "__main__":
    main()

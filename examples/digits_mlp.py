"""An MLP on scikit-learn's 8x8 digits: >= 95% test accuracy in seconds.

Run: python examples/digits_mlp.py [--epochs N] [--compile] [--save FILE]

With --compile the training step (forward and loss, with its backward) runs as C built
by gradc.compile; the optimizer stays eager. The run first times a few eager steps and
then the compiled ones, so both per-step times come from the same process.
"""

from digits_data import load_digits_split, train_and_report
from train_loop import example_args

import gradc
from gradc import nn

TIMED_STEPS = 50


def build_model() -> nn.Module:
    """The untrained network (`gradc export examples/digits_mlp.py:build_model --state FILE` loads the
    weights `--save FILE` wrote into it)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def main() -> None:
    args = example_args(__doc__.splitlines()[0], epochs=30, compile_option=True, save_option=True)
    gradc.manual_seed(0)
    train, test = load_digits_split()
    model = build_model()
    optimizer = gradc.optim.Adam(model.parameters(), lr=2e-3)
    train_and_report(args, model, optimizer, train, test, TIMED_STEPS)


if __name__ == "__main__":
    main()

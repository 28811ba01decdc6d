"""Each example runs end to end for a few batches (the full runs are quoted in the closing
notes: they take up to two minutes each)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          cwd=EXAMPLES, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_demo_runs():
    out = run_example("demo.py")
    assert "gradcheck(softmax): True" in out
    assert "SquareBackward" in out


@pytest.mark.parametrize("name", ["digits_mlp.py", "digits_cnn.py"])
def test_digits_examples_train_a_few_batches(name):
    pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn (examples extra)")
    out = run_example(name, "--epochs", "1", "--max-batches", "3")
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert 0.0 <= accuracy <= 1.0


def test_char_transformer_loss_falls():
    out = run_example("char_transformer.py", "--steps", "12", "--batch-size", "8", "--context", "32")
    losses = [float(line.split()[3]) for line in out.splitlines() if line.startswith("step")]
    assert losses[0] > 4.0  # about ln(vocabulary) at initialisation
    assert losses[-1] < losses[0]
    assert "sample: The " in out


@pytest.mark.parametrize("name", ["digits_mlp.py", "digits_cnn.py"])
def test_digits_compiled_step_reports_both_timings(name):
    pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn (examples extra)")
    out = run_example(name, "--compile", "--epochs", "1", "--max-batches", "3")
    assert "eager step:" in out and "compiled step:" in out
    assert 0.0 <= float(out.split("test accuracy:")[1].split()[0]) <= 1.0


def test_char_transformer_compiled_reports_both_timings():
    out = run_example("char_transformer.py", "--compile", "--steps", "12", "--batch-size", "8", "--context", "32")
    assert "eager step:" in out and "compiled step:" in out
    losses = [float(line.split()[3]) for line in out.splitlines() if line.startswith("step")]
    assert losses[-1] < losses[0]

"""Screenshot of the HTML report of the digits MLP training step, taken by headless Chromium.

Usage: python scripts/report_screenshot.py OUT.png [--html REPORT.html]

Builds the model of examples/digits_mlp.py (same layer shapes), runs one compiled training
step (forward, cross-entropy and backward) on random data under GRADC_DUMP_DIR, writes the
report of the dumped graphs (`gradc.compiler.report.write_html`, beside OUT.png unless
--html says where) and has Chromium screenshot it at 1400x2000. Chromium is installed with
apt-get only when no Chromium binary is on PATH; when it cannot be (not root, no apt-get,
or the install fails) the script says why and exits with SKIPPED (77) after writing the
report. Exit 0: the screenshot was written; anything else: a failure.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import gradc
import gradc.nn.functional as F
from gradc import nn
from gradc.compiler import dump
from gradc.compiler.report import write_html

SKIPPED = 77
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MODEL: nn.Module | None = None  # built by build_report: the layers of examples/digits_mlp.py


def find_chromium() -> str | None:
    """The first Chromium-family binary on PATH, or None."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def install_chromium() -> str | None:
    """Install Debian's `chromium` package; returns the binary, or None with the reason printed."""
    if not shutil.which("apt-get") or os.geteuid() != 0:
        print("report_screenshot: no Chromium on PATH, and apt-get is missing or we are not root", file=sys.stderr)
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            print(f"report_screenshot: {' '.join(command)} timed out", file=sys.stderr)
            return None
        if done.returncode != 0:
            print(f"report_screenshot: {' '.join(command)} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return None
    return find_chromium()


def train_step(images: gradc.Tensor, labels: gradc.Tensor) -> gradc.Tensor:
    """The digits MLP's loss: the function compiled (with its backward) and reported."""
    return F.cross_entropy(MODEL(images), labels)


def build_report(html: Path) -> None:
    """Compile one digits-MLP training step under a dump and write its report to `html`."""
    global MODEL
    gradc.manual_seed(0)
    MODEL = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    with tempfile.TemporaryDirectory() as folder:
        os.environ["GRADC_DUMP_DIR"] = folder
        dump.clear()
        gradc.compile(train_step)(gradc.randn(64, 8, 8), gradc.randint(0, 10, (64,))).backward()
        del os.environ["GRADC_DUMP_DIR"]
    write_html(list(dump.records), html)


def screenshot(browser: str, html: Path, png: Path) -> None:
    """Chromium's headless screenshot of `html`, 1400 px wide and 2000 px tall, into `png`."""
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1400,2000",
                        html.resolve().as_uri()], capture_output=True, timeout=120, check=True)
    if not png.exists():
        raise SystemExit(f"report_screenshot: {browser} wrote no screenshot")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("png", type=Path, help="where the screenshot goes")
    parser.add_argument("--html", type=Path, help="where the report goes (default: OUT.png's name, .html)")
    args = parser.parse_args()
    html = args.html or args.png.with_suffix(".html")
    build_report(html)
    print(f"report: {html}")
    browser = find_chromium() or install_chromium()
    if browser is None:
        print("report_screenshot: SKIPPED, Chromium is not available to take the screenshot", file=sys.stderr)
        return SKIPPED
    screenshot(browser, html, args.png)
    print(f"screenshot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

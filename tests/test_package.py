"""Packaging: the version, the CLI and its entry point, the wheel's contents, the public names."""
from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gradc

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

CONTRACT = """Tensor tensor zeros ones empty full arange linspace eye rand randn randint zeros_like ones_like
    empty_like full_like rand_like randn_like from_numpy from_dlpack manual_seed float16 float32 float64 int8
    int32 int64 uint8 bool float double long int Size no_grad enable_grad set_grad_enabled is_grad_enabled
    inference_mode autograd""".split()
OP_NAMES = """neg abs exp log log1p expm1 sqrt rsqrt sin cos tanh sigmoid relu gelu silu erf pow maximum minimum
    clamp where sum mean var std prod max min amax amin argmax argmin logsumexp softmax log_softmax cumsum
    matmul mm bmm einsum cat stack gather scatter_add index_select masked_fill tril triu outer sort
    topk""".split()


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_python_m_gradc_version_prints_the_package_version():
    proc = subprocess.run([sys.executable, "-m", "gradc", "--version"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"gradc {gradc.__version__}"


def test_version_is_a_release_string():
    parts = gradc.__version__.split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2]), gradc.__version__


def test_console_script_is_declared_and_resolves(capsys):
    target = pyproject()["project"]["scripts"]["gradc"]
    module, _, attr = target.partition(":")
    main = getattr(importlib.import_module(module), attr)
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"gradc {gradc.__version__}"
    with pytest.raises(SystemExit) as exc:
        main([])  # a subcommand is required: usage on stderr, exit 2
    assert exc.value.code == 2 and "COMMAND" in capsys.readouterr().err


def test_console_script_is_installed_and_runs():
    """The README's set-up installs the package, so its `gradc` script must be there."""
    (ep,) = importlib.metadata.entry_points(group="console_scripts", name="gradc")
    assert ep.value == pyproject()["project"]["scripts"]["gradc"]
    script = shutil.which("gradc", path=str(Path(sys.executable).parent))
    assert script is not None, "the gradc script is not next to this interpreter"
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"gradc {gradc.__version__}"


def test_wheel_maps_templates_and_runtime_into_the_package(tmp_path):
    """A regular (non-editable) wheel built from a copy of the sources; no network: the
    build uses this environment's setuptools."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("gradc", "templates", "runtime"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("gradc-*.whl")
    assert wheel.name.startswith(f"gradc-{gradc.__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"gradc-{gradc.__version__}.dist-info"
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "gradc").rglob("*.py")}
    shipped |= {"gradc/templates/" + str(p.relative_to(ROOT / "templates")) for p in (ROOT / "templates").rglob("*.j2")}
    shipped |= {"gradc/runtime/" + p.name for p in (ROOT / "runtime").glob("*.h")}
    shipped |= {"gradc/templates/README.md", "gradc/runtime/README.md"}
    missing = sorted(shipped - names)
    assert not missing, f"missing from {wheel.name}: {missing}"
    assert not any(n.startswith(("templates/", "runtime/", "tests/")) for n in names), sorted(names)
    assert f"\nVersion: {gradc.__version__}\n" in metadata
    assert "gradc = gradc.cli:main" in entry_points


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_names(name):
    assert hasattr(gradc, name), f"gradc.{name} is missing"


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_names_are_functions(name):
    assert callable(getattr(gradc, name, None)), f"gradc.{name} is missing or not callable"


def test_dtype_attributes_and_aliases():
    assert gradc.float32.is_floating_point is True and gradc.float32.itemsize == 4
    assert gradc.float64.is_floating_point is True and gradc.float64.itemsize == 8
    assert gradc.float16.is_floating_point is True and gradc.float16.itemsize == 2
    for dt, size in ((gradc.int8, 1), (gradc.uint8, 1), (gradc.int32, 4), (gradc.int64, 8), (gradc.bool, 1)):
        assert dt.is_floating_point is False and dt.itemsize == size, dt
    assert gradc.float is gradc.float32 and gradc.double is gradc.float64
    assert gradc.long is gradc.int64 and gradc.int is gradc.int32
    assert gradc.zeros(2).dtype is gradc.float32


def test_public_names_are_usable_together():
    with gradc.no_grad():
        assert not gradc.is_grad_enabled()
    assert gradc.is_grad_enabled()
    x = gradc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (g,) = gradc.autograd.grad(gradc.sum(x * x), [x])
    assert g.tolist() == [2.0, 4.0, 6.0]
    assert isinstance(x, gradc.Tensor) and x.shape == gradc.Size([3])

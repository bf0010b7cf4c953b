"""The wheel and the sdist carry everything `workbench run` needs outside a checkout: the examples/ folder
(configs and data slices, as the package ``ui.examples``), every package and every data file of the packages.

The distributions are built from a copy of the sources, so the checkout gets no build/ or egg-info folders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("curation", "labeling", "finetune", "evaluate", "ui")
SOURCES = (*PACKAGES, "examples", "pyproject.toml", "README.md")


def _files(folder: Path) -> list[str]:
    """Every file under ``folder``, relative to it, without bytecode caches."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", minversion="77")  # the build backend of pyproject.toml (the dev extra)
    src = tmp_path_factory.mktemp("sources") / "workbench"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    return src


@pytest.fixture(scope="module")
def wheel(sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    proc = subprocess.run([*cmd, "-w", str(out), str(sources)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [built] = out.glob("workbench-*.whl")
    return built


def test_the_wheel_carries_the_examples_and_every_package_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    examples = _files(ROOT / "examples")
    assert {"pipeline.toml", "curate.toml", "qlora.toml", "targets.toml"} <= set(examples)
    assert "data/openwebtext/urlsf_subset00-1_data.xz" in examples and len(examples) > 30
    missing = [f"examples/{f}" for f in examples if f"ui/examples/{f}" not in names]
    # a new subpackage or data file that pyproject.toml's packages / package-data leave out
    for package in PACKAGES:
        missing += [f"{package}/{f}" for f in _files(ROOT / package) if f"{package}/{f}" not in names]
    assert not missing, f"not in {wheel.name}: {missing}"
    assert not [n for n in names if n.startswith("examples/")]  # no top-level `examples` package


def test_the_installed_wheel_finds_its_examples_from_any_folder(wheel, tmp_path):
    """The wheel unpacked (as pip installs it) and imported from a folder that is not a checkout."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "from ui.pipeline import load_config\n"
        "from ui.commands.curate import DEFAULT_CONFIG\n"
        "cfg = load_config(None)\n"
        "paths = [p for s in cfg.ingest for p in s.paths] + [cfg.curate.config, cfg.finetune.config, DEFAULT_CONFIG]\n"
        "print(json.dumps({'config': str(cfg.path), 'paths': [str(p) for p in paths],"
        " 'exist': [p.exists() for p in paths]}))\n"
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["config"] == str(site / "ui" / "examples" / "pipeline.toml")
    assert all(found["exist"]), found["paths"]
    assert all(p.startswith(str(site / "ui" / "examples")) for p in found["paths"])  # relative to the config


def test_the_sdist_carries_the_examples(sources, tmp_path):
    code = "import sys\nfrom setuptools import build_meta\nprint(build_meta.build_sdist(sys.argv[1]))\n"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=sources)
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        names = set(sdist.getnames())
    top = name.removesuffix(".tar.gz")
    missing = [f for f in _files(ROOT / "examples") if f"{top}/examples/{f}" not in names]
    assert not missing, f"not in {name}: {missing}"

"""Packaging: the wheel's contents and metadata, absolute README links, the changelog, mypy."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import sb3_som

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/sb3-som/sb3-som"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built from the checkout (no dependencies, no build isolation: the venv's setuptools)."""
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (path,) = out.glob("sb3_som-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_types_license_and_hyperparameters(wheel):
    names = wheel.namelist()
    assert "sb3_som/py.typed" in names
    assert "sb3_som/hyperparams/som.yml" in names
    (license_file,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_file).decode() == (ROOT / "LICENSE").read_text()
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_wheel_metadata_names_author_urls_and_the_tested_python(wheel):
    (metadata_file,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(wheel.read(metadata_file).decode())
    assert metadata["Name"] == "sb3-som" and metadata["Version"] == sb3_som.__version__
    assert metadata["Author"] == "sb3-som contributors"
    assert "MIT" in (metadata["License-Expression"], metadata["License"])
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert urls["Source"] == REPOSITORY and all(url.startswith(REPOSITORY) for url in urls.values())
    # the classifiers name the Python versions python_requires admits, from its lowest on; the one running here is
    # among those it admits
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in metadata.get_all("Classifier")
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    lowest = min(versions, key=lambda version: tuple(map(int, version.split("."))))
    assert versions and metadata["Requires-Python"] == f">={lowest}"
    assert sys.version_info[:2] >= tuple(map(int, lowest.split(".")))
    assert "Typing :: Typed" in metadata.get_all("Classifier")


def test_readme_links_and_images_are_absolute_and_point_at_files():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r'<img[^>]+src="([^"]+)"', readme)
    assert targets
    for target in targets:
        assert target.startswith("https://"), f"relative link in README.md: {target}"
        for prefix in (f"{REPOSITORY}/blob/main/", f"{REPOSITORY}/raw/main/"):
            if target.startswith(prefix):
                path = target.removeprefix(prefix).split("#")[0]
                assert (ROOT / path).exists(), f"README.md links to {target}, and there is no {path}"


def test_changelog_lists_the_version():
    assert f"## {sb3_som.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_mypy_is_clean():
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

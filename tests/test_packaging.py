"""What `pip install` of a release gets: the sdist and the wheel, built as `python -m build` builds
them from a clean clone (the sdist first, then the wheel from the unpacked sdist).

Reference: the files of the checkout under `hf_arith/`, `modeling/` and `model_cards/`, each where
setup.py installs it (`modeling/x.py` as `hf_arith/modeling/x.py`). A wheel built from the sdist
that holds all of them also shows that the sdist holds what a wheel build needs.
`make test-wheel` then installs such a wheel and runs it.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from installs import build_dists, checkout_files

REPO = Path(__file__).resolve().parents[1]
# Source folder -> where it is installed (setup.py's package_dir).
INSTALLED_AS = {"hf_arith": "hf_arith", "modeling": "hf_arith/modeling", "model_cards": "hf_arith/model_cards"}


def library_files() -> dict[str, str]:
    """Every file of the library in the checkout -> its path inside the wheel."""
    try:
        names = checkout_files()
    except RuntimeError as err:
        pytest.skip(str(err))
    split = (name.partition("/") for name in names)
    return {f"{folder}/{rest}": f"{INSTALLED_AS[folder]}/{rest}" for folder, _, rest in split if folder in INSTALLED_AS}


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    return build_dists(tmp_path_factory.mktemp("dist"))


def test_the_wheel_holds_every_file_of_the_library_and_nothing_else(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    missing = sorted(source if source == installed else f"{source} (as {installed})"
                     for source, installed in library_files().items() if installed not in names)
    assert not missing, f"the wheel lacks {len(missing)} files of the library: {missing}"
    # One package: the top-level folders go in under hf_arith/, not beside it.
    assert {name.split("/")[0] for name in names} == {"hf_arith", wheel.name.split("-py3")[0] + ".dist-info"}
    assert re.search(r"^hf-arith = hf_arith\.cli:main$", entry_points, flags=re.M)


def test_the_sdist_holds_what_a_wheel_build_needs(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(root + "/") for name in archive.getnames()}
    needed = {"pyproject.toml", "setup.py", "README.md", *library_files()}  # README.md: the long description
    assert not needed - names, f"the sdist lacks {sorted(needed - names)}"
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert root == f"hf_arith-{version}"

"""The model folders the Hub-facing checks load: `HF_ARITH_COMPAT_FOLDERS` when `make test-compat`
made them (and this environment has no hf_arith), or made here with hf_arith (the main suite)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> Path:
    if os.environ.get("HF_ARITH_COMPAT_FOLDERS"):
        return Path(os.environ["HF_ARITH_COMPAT_FOLDERS"])
    sys.path.insert(0, str(Path(__file__).parent))
    from make_folders import build

    return build(tmp_path_factory.mktemp("compat"))

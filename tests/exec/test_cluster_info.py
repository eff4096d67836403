"""The cluster backends' registration, light imports and ``weft doctor``'s cluster
section, without a cluster (they run on every interpreter)."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import weft.exec
from weft import runtime
from weft.errors import BackendUnavailable
from weft.exec._cluster_info import ClusterInfo, probe_dask, probe_ray

HAS_RAY = importlib.util.find_spec("ray") is not None
HAS_DASK = importlib.util.find_spec("distributed") is not None


def test_cluster_backends_are_registered() -> None:
    assert {"ray", "dask"} <= set(weft.exec.available_backends())


def test_cluster_modules_import_no_engine() -> None:
    code = ("import sys, weft.exec, weft.exec._ray, weft.exec._dask, weft.exec._cluster_info, weft.runtime; "
            "print(','.join(m for m in ('ray', 'dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"importing weft's cluster backends pulled in {out.stdout.strip()}"


@pytest.mark.skipif(HAS_RAY, reason="Ray is installed here")
def test_ray_missing_says_what_to_install() -> None:
    with pytest.raises(BackendUnavailable, match=r"pip install 'weft\[ray\]'"):
        weft.exec.create("ray", workers=1)


@pytest.mark.skipif(HAS_DASK, reason="distributed is installed here")
def test_dask_missing_says_what_to_install() -> None:
    with pytest.raises(BackendUnavailable, match=r"pip install 'weft\[dask\]'"):
        weft.exec.create("dask", workers=1)


@pytest.fixture
def no_cluster_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # where `ray start` would leave its address
    return tmp_path


def test_no_cluster_says_how_to_point_at_one(no_cluster_configured: Path) -> None:
    ray_info, dask_info = probe_ray(), probe_dask()
    assert not ray_info.reachable and not dask_info.reachable
    assert ("RAY_ADDRESS" if HAS_RAY else "pip install 'weft[ray]'") in ray_info.note
    assert ("DASK_SCHEDULER_ADDRESS" if HAS_DASK else "pip install 'weft[dask]'") in dask_info.note
    if runtime.is_free_threaded_build() and not HAS_RAY:
        assert "free-threaded" in ray_info.note


@pytest.mark.skipif(not HAS_RAY, reason="the address file is read only where Ray is installed")
def test_stale_ray_address_costs_no_probe(no_cluster_configured: Path) -> None:
    port = unused_port()
    (no_cluster_configured / "ray").mkdir()
    (no_cluster_configured / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    info = probe_ray()
    assert not info.reachable and info.address == f"127.0.0.1:{port}"
    assert "nothing answers" in info.note


def unused_port() -> int:
    """A local port that nothing listens on (bound once, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_reports_clusters(no_cluster_configured: Path) -> None:
    from weft.cli import app

    facts = runtime.facts(check_imports=False)
    assert [c.engine for c in facts.clusters] == ["ray", "dask"]
    assert all(isinstance(c, ClusterInfo) for c in facts.clusters)
    assert runtime.facts(check_imports=False, check_clusters=False).clusters == ()
    result = CliRunner().invoke(app, ["doctor", "--json", "--no-check-imports"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.output)["clusters"]
    assert [c["engine"] for c in reported] == ["ray", "dask"] and not reported[0]["reachable"]
    table = CliRunner().invoke(app, ["doctor", "--no-check-imports"])
    assert table.exit_code == 0 and "clusters" in table.output

"""Schemathesis against a running `hub serve`, on SQLite and PostgreSQL: no 5xx, no status the OpenAPI document does not list.

The run is deterministic (`--generation-deterministic`) and bounded in time,
so it stays within about a minute per database.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import DEFAULT_TENANTS, config_document, write_toml
from tests.pg import free_port

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
TIME_BUDGET_SECONDS = 45


def wait_until_serving(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"hub serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("hub serve did not answer in time")


def test_openapi_fuzzing_finds_no_server_error_and_no_undocumented_status(
    database_url: str, run_cli: Any, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The fuzzer sends thousands of requests a minute: the tenant's rate limit is raised out of its way.
    tenants = {**DEFAULT_TENANTS, "clinic": {**DEFAULT_TENANTS["clinic"], "api_requests_per_minute": 1_000_000}}
    document = config_document(database_url, hub={"public_url": base}, tenants=tenants)
    document["hub"]["plugin_dirs"] = []
    config = write_toml(tmp_path / "config.toml", document)
    minted = run_cli("tenants", "key", "clinic", config=config)
    assert minted.returncode == 0, minted.stderr
    key = minted.stdout.strip()
    serve = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--port", str(port)], cwd=tmp_path, text=True,
        env={"HUB_CONFIG": str(config), "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_until_serving(f"{base}/health", serve)
        result = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{base}/api/v1/openapi.json",
             "--checks", "not_a_server_error,status_code_conformance",
             "--header", f"Authorization: Bearer {key}",
             "--generation-deterministic", "--max-examples", "30", "--max-time", str(TIME_BUDGET_SECONDS),
             "--no-shrink", "--workers", "2", "--warnings", "off"],
            capture_output=True, text=True, cwd=tmp_path, timeout=TIME_BUDGET_SECONDS + 120,
        )
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "generated" in result.stdout

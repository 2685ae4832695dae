"""Each service installed exactly as deploy/docker/Dockerfile installs it (the same
deploy/docker/stage.sh steps: requirements.lock, hash-checked, into a fresh virtualenv,
generated protos, only runtime/ and the service's package), started with the image's entry point and
PYTHONPATH from a copy of the tree holding nothing else, against PostgreSQL: health SERVING."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.deploy import processes

pytestmark = pytest.mark.slow

ROOT = processes.ROOT
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
STAGE = ["sh", str(ROOT / "deploy" / "docker" / "stage.sh")]


def _image_env(name: str) -> str:
    """A value of the services' ENV in the Dockerfile, e.g. PYTHONPATH=/app:/app/services."""
    match = re.search(rf"\b{name}=(\S+)", DOCKERFILE.read_text())
    assert match, name
    return match.group(1)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/venv and /app/gen as the build stage makes them (once for every service)."""
    root = tmp_path_factory.mktemp("image")
    subprocess.run([*STAGE, "venv", str(root / "opt" / "venv")], cwd=ROOT, check=True)
    subprocess.run([*STAGE, "gen", sys.executable, str(root / "app" / "gen")], cwd=ROOT, check=True)
    return root


@pytest.mark.parametrize("service", sorted(processes.READ_CALLS))
async def test_installed_as_the_image_does_it_serves(
    service: str, image_tree: Path, database_url: str, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    subprocess.run([*STAGE, "app", service, str(app)], cwd=ROOT, check=True)
    (app / "gen").symlink_to(image_tree / "app" / "gen")
    assert not (app / "services" / service / "tests").exists()
    assert sorted(p.name for p in (app / "services").iterdir()) == [service]
    entry = re.search(r'ENTRYPOINT \["python", "-m", "(\w+)"\]', DOCKERFILE.read_text())
    assert entry
    python_path = _image_env("PYTHONPATH").replace("/app", str(app))
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": python_path}
    env = processes.environment(service, database_url, base=base)
    argv = [str(image_tree / "opt" / "venv" / "bin" / "python"), "-m", service, "serve"]
    async with processes.replica(argv, env, cwd=app) as replica:
        assert (
            await processes.health_status(replica.address) == health_pb2.HealthCheckResponse.SERVING
        )


async def test_edge_installed_as_the_image_does_it_answers_healthz(
    image_tree: Path, database_url: str, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    subprocess.run([*STAGE, "app", "edge", str(app)], cwd=ROOT, check=True)
    (app / "gen").symlink_to(image_tree / "app" / "gen")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": _image_env("PYTHONPATH").replace("/app", str(app)),
        "DATABASE_URL": database_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "0",  # bound by the process itself, printed on stdout
        "LOG_LEVEL": "WARNING",
    }
    argv = [str(image_tree / "opt" / "venv" / "bin" / "python"), "-m", "edge", "serve"]
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=app, stdout=asyncio.subprocess.PIPE
    )
    try:
        port = await processes.listening_port(process)
        status = 0
        for _ in range(150):
            assert process.returncode is None, "edge exited at start"
            try:
                status = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
            except OSError:
                await asyncio.sleep(0.2)
                continue
            if status == 200:
                break
            await asyncio.sleep(0.2)
        assert status == 200
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)

"""`make dist` builds the typed client wheel; installed alone in a fresh virtualenv (no
repository on its path), it calls a running policy server: health, then GetBounds with the
caller's service credential (the servers' verifier accepts the client's format), with an
admin's token, and refused with a forged key or with no credential."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import service_auth, testing
from tests.packaging import servers
from tests.packaging.requirements import ROOT

pytestmark = pytest.mark.slow

UV = str(Path(sys.executable).with_name("uv"))
CALLER = Path(__file__).with_name("client_caller.py")


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtualenv with only the wheel `make dist` built (and its
    dependencies, at the versions of the runtime's lock)."""
    subprocess.run(["make", "-s", "dist"], cwd=ROOT, check=True)
    wheels = sorted((ROOT / "dist").glob("askvault_clients-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path_factory.mktemp("client") / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            str(wheels[0]),
            "-c",
            str(ROOT / "requirements.lock"),
        ],
        check=True,
    )
    return python


async def test_the_installed_wheel_calls_a_running_service(
    client_python: Path, database_url: str, tmp_path: Path
) -> None:
    edge_key = service_auth.SigningKey.generate("edge")
    forged_key = service_auth.SigningKey.generate("edge")
    (tmp_path / "edge.pem").write_text(edge_key.pem())
    (tmp_path / "forged.pem").write_text(forged_key.pem())

    service, settings = await servers.policy(
        database_url, service_public_keys=json.dumps(service_auth.jwks([edge_key]))
    )
    async with testing.running(service, settings) as running:
        # A subprocess, not subprocess.run: the server answers on this test's event loop.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
        process = await asyncio.create_subprocess_exec(
            str(client_python),
            str(CALLER),
            running.address,
            str(tmp_path / "edge.pem"),
            str(tmp_path / "forged.pem"),
            testing.TEST_ADMIN_PROVIDER.issue("admin-alice"),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    seen = json.loads(stdout)
    assert Path(seen["package"]).is_relative_to(client_python.parent.parent)
    assert seen["runtime_importable"] is False
    assert seen["health"] == "SERVING"
    assert seen["as_edge"].startswith("OK")
    assert seen["as_admin"].startswith("OK")
    assert seen["forged"] == "UNAUTHENTICATED"
    assert seen["anonymous"] in {"UNAUTHENTICATED", "PERMISSION_DENIED"}
    assert seen["retried_reads"] > 10


def test_the_wheel_s_stubs_type_check_a_caller(client_python: Path, tmp_path: Path) -> None:
    # mypy --strict over the caller with the wheel's files (generated .pyi included) as its
    # only first-party code: a wrong field or request type would fail here.
    site = next((client_python.parent.parent / "lib").glob("python*/site-packages"))
    package_only = tmp_path / "typed"
    for name in ("askvault", "askvault_clients"):
        shutil.copytree(site / name, package_only / name)
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from askvault.policy.v1 import policy_pb2\npolicy_pb2.GetBoundsRequest(workspace=1)\n"
    )
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent"]
    env = {**os.environ, "MYPYPATH": str(package_only)}
    good = subprocess.run(
        [*mypy, str(CALLER)], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert good.returncode == 0, good.stdout
    bad = subprocess.run([*mypy, str(wrong)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert "workspace" in bad.stdout and bad.returncode == 1, bad.stdout

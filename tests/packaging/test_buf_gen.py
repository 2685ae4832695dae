"""protos/buf.gen.yaml, the code generation for callers in other languages, is a valid buf v2
template of local plugins: run here with the plugins this venv has (mypy-protobuf's), the
others (Go, TypeScript) left out since their protoc-gen-* are not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.requirements import ROOT

BIN = Path(sys.executable).parent


def _entries(template: str) -> tuple[str, list[str]]:
    """The template's head (up to ``plugins:``) and its plugin entries, as text."""
    head, _, plugins = template.partition("\nplugins:\n")
    entries = ["  - " + entry for entry in plugins.split("  - ")[1:]]
    return head + "\nplugins:\n", entries


@pytest.mark.integration
def test_buf_gen_yaml_generates_with_the_local_plugins(tmp_path: Path) -> None:
    template = (ROOT / "protos" / "buf.gen.yaml").read_text()
    head, entries = _entries(template)
    assert all(entry.startswith("  - local: protoc-gen-") for entry in entries), entries
    plugins = {entry.split()[2] for entry in entries}
    assert {"protoc-gen-go", "protoc-gen-go-grpc", "protoc-gen-es"} <= plugins
    here = [e for e in entries if shutil.which(e.split()[2], path=str(BIN))]
    assert len(here) == 2  # protoc-gen-mypy and protoc-gen-mypy_grpc
    out = tmp_path / "gen"
    local = head + "".join(e.replace("../build/gen", str(out)) for e in here)
    (tmp_path / "buf.gen.yaml").write_text(local)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [str(BIN / "buf"), "generate", "--template", str(tmp_path / "buf.gen.yaml")],
        cwd=ROOT / "protos",
        env=env,
        check=True,
    )
    generated = {p.relative_to(out / "pyi").as_posix() for p in out.rglob("*.pyi")}
    assert "askvault/policy/v1/policy_pb2.pyi" in generated
    assert "askvault/policy/v1/policy_pb2_grpc.pyi" in generated

"""Every third-party module the code imports comes from a distribution pinned directly in a
requirements file, not only as another package's dependency (which may drop it, or move it,
in any release)."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import pytest

from tests.packaging.requirements import ROOT, normalize, pins_with_includes

# Code the images run: its imports must be pinned in requirements.txt (what they install).
RUNTIME_CODE = ("runtime", "services", "cli")
EMULATOR_CODE = ("emulators",)
# Tools, tests and the local stack may use the development pins too.
DEV_CODE = ("devstack", "bench", "chaos", "tests", "conftest.py", "clients")
# Runtime files that only tests and the local stack import (never a service in an image).
DEV_ONLY_FILES = ("runtime/embedded_postgres.py", "runtime/testing.py", "runtime/testing_keys.py")
FIRST_PARTY_DIRS = (ROOT, ROOT / "services", ROOT / "emulators", ROOT / "gen", ROOT / "cli")
FIRST_PARTY_EXTRA = {"askvault", "askvault_clients"}


def _is_test(file: Path) -> bool:
    relative = file.relative_to(ROOT)
    return "tests" in relative.parts or str(relative) in DEV_ONLY_FILES


def python_files(*names: str, tests: bool) -> list[Path]:
    """The Python files under some folders: only the tests and dev-only files, or none."""
    files: list[Path] = []
    for name in names:
        path = ROOT / name
        found = [path] if path.is_file() else sorted(path.rglob("*.py"))
        files += [f for f in found if "__pycache__" not in f.parts and _is_test(f) == tests]
    return files


def imports(files: list[Path]) -> dict[str, set[str]]:
    """Absolute imported module names (first two parts) -> files importing them."""
    found: dict[str, set[str]] = {}
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            for module in modules:
                key = ".".join(module.split(".")[:2])
                found.setdefault(key, set()).add(_name(file))
    return found


def _name(file: Path) -> str:
    return str(file.relative_to(ROOT)) if file.is_relative_to(ROOT) else str(file)


def _first_party(top: str) -> bool:
    if top in FIRST_PARTY_EXTRA or top.startswith("askvault"):
        return True
    return any((d / top).is_dir() or (d / f"{top}.py").is_file() for d in FIRST_PARTY_DIRS)


@cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def _files_by_distribution() -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for distribution in importlib.metadata.distributions():
        name = normalize(distribution.metadata["Name"])
        for file in distribution.files or ():
            owners.setdefault(str(file), set()).add(name)
    return owners


def distributions_of(module: str) -> set[str]:
    """The distributions that provide a module: for a namespace package shared by several
    (google, opentelemetry), those holding its second-level package."""
    top = module.split(".")[0]
    providers = {normalize(d) for d in _packages_distributions().get(top, [])}
    if len(providers) <= 1 or "." not in module:
        return providers
    prefix = module.replace(".", "/")
    owners = _files_by_distribution()
    return {
        name
        for path, names in owners.items()
        if path.startswith(prefix + "/") or path == prefix + ".py"
        for name in names
    }


def unpinned(files: list[Path], pinned: dict[str, str]) -> dict[str, str]:
    problems: dict[str, str] = {}
    for module, importers in sorted(imports(files).items()):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "__future__" or _first_party(top):
            continue
        providers = distributions_of(module)
        if not providers:
            problems[module] = f"no installed distribution provides it ({sorted(importers)[0]})"
        elif not providers & pinned.keys():
            problems[module] = f"from {sorted(providers)}, not pinned ({sorted(importers)[0]})"
    return problems


def test_runtime_imports_are_pinned_in_requirements_txt() -> None:
    files = python_files(*RUNTIME_CODE, tests=False)
    assert len(files) > 100
    assert unpinned(files, pins_with_includes("requirements.txt")) == {}


@pytest.mark.integration
def test_emulator_imports_are_pinned_in_their_image_requirements() -> None:
    files = python_files(*EMULATOR_CODE, tests=False)
    pinned = pins_with_includes("deploy/docker/emulators-requirements.txt")
    assert unpinned(files, pinned) == {}


def test_tool_and_test_imports_are_pinned_in_requirements_dev_txt() -> None:
    code = (*RUNTIME_CODE, *EMULATOR_CODE, *DEV_CODE)
    files = python_files(*code, tests=True) + python_files(*DEV_CODE, tests=False)
    assert unpinned(files, pins_with_includes("requirements-dev.txt")) == {}


def test_the_check_tells_a_module_pinned_only_through_another_package(tmp_path: Path) -> None:
    # pydantic_core is installed as pydantic's dependency; pinning pydantic does not pin it.
    source = tmp_path / "uses_core.py"
    source.write_text("import pydantic_core\nimport pydantic\nimport json\n")
    assert set(unpinned([source], {"pydantic": "2"})) == {"pydantic_core"}
    assert unpinned([source], {"pydantic": "2", "pydantic-core": "2"}) == {}

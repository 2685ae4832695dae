"""The locks match their requirement files: a pin added, changed or removed in a
requirements*.txt without `make lock` fails here, as does a lock entry without hashes (which
`uv pip install --require-hashes` / `pip install --require-hashes` would refuse anyway)."""

from __future__ import annotations

import pytest

from tests.packaging.requirements import (
    LOCKS,
    ROOT,
    included_files,
    pins,
    pins_with_includes,
    read_lock,
)


@pytest.mark.parametrize("requirements", sorted(LOCKS))
def test_the_lock_holds_exactly_the_pins_of_its_requirement_files(requirements: str) -> None:
    lock = read_lock(LOCKS[requirements])
    for source in included_files(requirements):
        locked = {
            name: entry.version for name, entry in lock.items() if source in entry.required_by
        }
        assert locked == pins(source), f"{source} changed: run `make lock`"


@pytest.mark.parametrize("requirements", sorted(LOCKS))
def test_every_locked_package_has_hashes_and_every_pin_is_locked(requirements: str) -> None:
    lock = read_lock(LOCKS[requirements])
    assert lock, "empty lock"
    assert {name for name, entry in lock.items() if entry.hashes == 0} == set()
    for name, version in pins_with_includes(requirements).items():
        assert lock[name].version == version
    assert "make lock" in (ROOT / LOCKS[requirements]).read_text().splitlines()[1]


def test_every_install_of_the_repository_is_hash_checked() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stage = (ROOT / "deploy/docker/stage.sh").read_text()
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in makefile
    assert "--require-hashes -r deploy/requirements-check.lock" in makefile
    dist = makefile[makefile.index("\ndist:") :]
    assert "--require-hashes" in dist
    assert "--build-constraints clients/build-requirements.lock" in dist
    assert "--require-hashes" in stage
    assert "requirements.txt" not in dockerfile.replace("# ", "")
    for lock in ("requirements.lock", "build-requirements.lock", "emulators-requirements.lock"):
        assert lock in dockerfile

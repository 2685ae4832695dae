"""Fixtures for identity's tests: a running identity server on a fresh database."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator

import grpc
import pytest

from askvault.identity.v1 import identity_pb2_grpc
from identity.service import IdentityService
from identity.settings import IdentitySettings
from runtime import testing
from runtime.server import RunningService


def identity_settings(database_url: str, **values: object) -> IdentitySettings:
    """Settings with fresh encryption and signing keys."""
    defaults: dict[str, object] = {
        "secrets_encryption_keys": f"k1:{base64.b64encode(os.urandom(32)).decode()}",
        "assertion_signing_keys": f"a1:{base64.b64encode(os.urandom(32)).decode()}",
    }
    defaults.update(values)
    return testing.make_settings(IdentitySettings, database_url, **defaults)


@pytest.fixture
async def identity_server(database_url: str) -> AsyncIterator[RunningService]:
    """Identity serving on a free port."""
    settings = identity_settings(database_url)
    async with testing.running(IdentityService(settings), settings) as running:
        yield running


@pytest.fixture
async def identity(
    identity_server: RunningService,
) -> AsyncIterator[identity_pb2_grpc.IdentityServiceAsyncStub]:
    """A client stub for the running identity server."""
    async with grpc.aio.insecure_channel(identity_server.address) as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel)

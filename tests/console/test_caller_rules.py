"""The console's own service credential opens exactly the RPCs it reads that take no admin
credential (policy GetEscalation and GetBounds, the notifier's ListMessages), and nothing a
visitor's flow or the enforcement point uses."""

from __future__ import annotations

import pytest

from notifier.service import NotifierService
from policy.service import PolicyService
from runtime import errors, service_auth

CONSOLE = service_auth.SigningKey.generate("console")
KEYS = service_auth.PublicKeys.from_jwks(service_auth.jwks([CONSOLE]))


def _check(allowed: dict[str, frozenset[str]], service: str, method: str) -> str:
    policy = service_auth.CallerPolicy(KEYS, allowed)
    metadata = ((service_auth.HEADER, service_auth.issue(CONSOLE)),)
    return policy.check(f"/{service}/{method}", metadata)


@pytest.mark.parametrize(
    ("allowed", "service", "method"),
    [
        (PolicyService.allowed_callers, "askvault.policy.v1.PolicyService", "GetEscalation"),
        (PolicyService.allowed_callers, "askvault.policy.v1.PolicyService", "GetBounds"),
        (NotifierService.allowed_callers, "askvault.notifier.v1.NotifierService", "ListMessages"),
    ],
)
def test_the_console_reads_what_it_shows(
    allowed: dict[str, frozenset[str]], service: str, method: str
) -> None:
    assert _check(allowed, service, method) == "console"


@pytest.mark.parametrize(
    ("allowed", "service", "method"),
    [
        (PolicyService.allowed_callers, "askvault.policy.v1.PolicyService", method)
        for method in ("Authorize", "Redeem", "Commit", "Release", "OpenEscalation")
    ]
    + [
        (NotifierService.allowed_callers, "askvault.notifier.v1.NotifierService", method)
        for method in ("Send", "GetMessage", "SetChannelConsent")
    ],
)
def test_the_console_takes_no_part_in_a_visitors_flow(
    allowed: dict[str, frozenset[str]], service: str, method: str
) -> None:
    with pytest.raises(errors.ServiceError) as refused:
        _check(allowed, service, method)
    assert refused.value.reason == "CALLER_NOT_ALLOWED"

"""Unit tests of the runtime's pure parts: redaction, error mapping, encryption, deadlines."""

from __future__ import annotations

import base64
import json
import logging
import os

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from runtime import deadlines, errors, logs, secretbox
from runtime.interceptors import to_status


def test_redact_masks_keys_secrets_tokens_and_card_numbers() -> None:
    text = (
        "key sk_test_51abcDEF whsec_abc123 card 4242 4242 4242 4242 "
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig and order 12345"
    )
    cleaned = logs.redact(text)
    for secret in ("sk_test_51abcDEF", "whsec_abc123", "4242 4242 4242 4242", "eyJhbGci"):
        assert secret not in cleaned
    assert "order 12345" in cleaned


def test_json_log_lines_mask_secret_fields() -> None:
    formatter = logs.JsonFormatter("svc")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "verify", (), None)
    record.user_hash = "deadbeef"
    record.workspace_id = "ws_1"
    line = json.loads(formatter.format(record))
    assert line["user_hash"] == "[redacted]"
    assert line["workspace_id"] == "ws_1"
    assert line["service"] == "svc"


def test_service_error_maps_to_status_with_error_info_and_bad_request() -> None:
    error = errors.invalid_argument(errors.FieldViolation("amount", "must be positive"))
    status = to_status(error, "policy.askvault.dev")
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    (_, details_bin) = next(
        m for m in status.trailing_metadata if m[0] == "grpc-status-details-bin"
    )
    details = status_pb2.Status.FromString(details_bin).details
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert details[0].Unpack(info)
    assert details[1].Unpack(bad_request)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "policy.askvault.dev")
    assert bad_request.field_violations[0].field == "amount"


def test_validator_reports_every_bad_field_at_once() -> None:
    check = errors.Validator()
    check.non_empty("", "workspace_id")
    check.non_empty("x" * 300, "contact_id")
    with pytest.raises(errors.ServiceError) as failed:
        check.check()
    assert [v.field for v in failed.value.violations] == ["workspace_id", "contact_id"]


def test_secretbox_binds_ciphertext_to_its_row_and_rotates() -> None:
    old = f"old:{base64.b64encode(os.urandom(32)).decode()}"
    new = f"new:{base64.b64encode(os.urandom(32)).decode()}"
    sealed_by_old = secretbox.SecretBox(old).seal(b"hmac secret", "ws_1/hmac/k1")
    rotated = secretbox.SecretBox(f"{new},{old}")
    assert rotated.open(sealed_by_old, "ws_1/hmac/k1") == b"hmac secret"
    assert rotated.seal(b"x", "r").startswith(b"new.")
    with pytest.raises(ValueError, match="does not open"):
        rotated.open(sealed_by_old, "ws_2/hmac/k1")
    with pytest.raises(ValueError, match="not configured"):
        secretbox.SecretBox(new).open(sealed_by_old, "ws_1/hmac/k1")


def test_outgoing_timeout_is_cut_to_the_callers_deadline() -> None:
    assert deadlines.timeout(5.0) == 5.0
    token = deadlines.set_from_remaining(0.5)
    try:
        assert 0.0 < deadlines.timeout(5.0) <= 0.5
    finally:
        deadlines.reset(token)
    token = deadlines.set_from_remaining(-1.0)
    try:
        assert deadlines.timeout(5.0) == 0.0
    finally:
        deadlines.reset(token)


def test_cursor_round_trips_and_refuses_foreign_tokens() -> None:
    from datetime import UTC, datetime

    from runtime import paging

    moment = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    assert paging.decode_cursor(paging.encode_cursor(moment, "esc_1")) == (moment, "esc_1")
    assert paging.decode_cursor("") is None
    with pytest.raises(errors.ServiceError) as refused:
        paging.decode_cursor("not-a-token")
    assert refused.value.violations[0].field == "page_token"
    assert paging.page_size(0, 50, 500) == 50
    assert paging.page_size(10_000, 50, 500) == 500


@pytest.mark.integration
def test_a_stuck_shutdown_ends_the_process_at_its_deadline() -> None:
    import subprocess
    import sys

    stuck = (
        "import time\n"
        "from runtime import server\n"
        "server._exit_if_stuck(0.3)\n"
        "time.sleep(30)\n"  # a shutdown that never finishes
    )
    finished = subprocess.run(
        [sys.executable, "-c", stuck], capture_output=True, timeout=20, check=False
    )
    assert finished.returncode == 70


def test_an_error_echoing_a_huge_field_still_fits_in_the_trailers() -> None:
    # Found by the gRPC fuzzer: a 100 KB map key echoed into a violation's field path made
    # the trailers too large, and the caller saw RESOURCE_EXHAUSTED without a reason.
    from runtime import interceptors

    name = "y" * 100_000
    check = errors.Validator()
    for index in range(50):
        check.require(False, f"variables.{name}{index}", "not a variable " + name)
    with pytest.raises(errors.ServiceError) as refused:
        check.check()
    status = interceptors.to_status(refused.value, "askvault.test")
    size = sum(len(key) + len(value) for key, value in status.trailing_metadata)
    assert size + len(status.details) < 8 * 1024, size
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT

"""The admin CLI against real servers: two admins change a bound, the audit log filtered,
the escalation inbox, Stripe connection and webhook health, secrets and settings, and the
errors that name what is missing. One test runs the installed ``askvault`` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from askvault.notifier.v1 import notifier_pb2
from runtime import testing
from runtime.local_identity_provider import LocalIdentityProvider
from smtp_sink.store import Fault
from stripe_emulator import seed
from tests.cli.conftest import ISSUER, WORKSPACE, CliSystem

pytestmark = pytest.mark.slow


def _json(result: Any) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


async def test_a_loosened_bound_needs_a_second_admin(cli_system: CliSystem) -> None:
    ana = cli_system.token("admin-ana")
    ben = cli_system.token("admin-ben")
    proposed = _json(
        await cli_system.run("--json", "bounds", "propose", "--refund-window-days", "30", token=ana)
    )
    assert proposed["state"] == "BOUNDS_CHANGE_STATE_PENDING"
    assert proposed["proposed_by"] == "admin-ana"
    assert "refund_window" in proposed["loosened_fields"]
    change_id = proposed["change_id"]
    # Not in force yet.
    before = _json(await cli_system.run("--json", "bounds", "get", token=ana))
    assert before["bounds"]["refund_window"] == "1209600s"

    # The proposer cannot approve their own change.
    alone = await cli_system.run("bounds", "approve", change_id, token=ana)
    assert alone.exit_code == 5, alone.stderr
    assert "SECOND_ADMIN_REQUIRED" in alone.stderr
    assert alone.stderr.count("\n") == 1

    approved = await cli_system.run("bounds", "approve", change_id, token=ben)
    assert approved.exit_code == 0, approved.stderr
    assert "applied" in approved.stdout and "admin-ben" in approved.stdout

    after = _json(await cli_system.run("--json", "bounds", "get", token=ben))
    assert after["bounds"]["refund_window"] == "2592000s"
    assert after["defaults"]["refund_window"] == "1209600s"
    history = _json(await cli_system.run("--json", "bounds", "history", token=ben))
    mine = next(c for c in history["changes"] if c["change_id"] == change_id)
    assert mine["approved_by"] == "admin-ben"
    assert mine["state"] == "BOUNDS_CHANGE_STATE_APPLIED"

    # The audit log holds the approval, by the second admin.
    audit = _json(await cli_system.run("--json", "audit", "list", "--limit", "1000", token=ben))
    assert any(
        event["subject_id"] == change_id and event["actor"]["id"] == "admin-ben"
        for event in audit["events"]
    ), audit


async def test_audit_list_filters_by_actor_and_customer(cli_system: CliSystem) -> None:
    token = cli_system.token("admin-flo")
    _json(await cli_system.run("--json", "bounds", "propose", "--plan-changes", "1", token=token))
    by_actor = _json(
        await cli_system.run("--json", "audit", "list", "--actor", "admin-flo", token=token)
    )
    assert by_actor["events"]
    assert {event["actor"]["id"] for event in by_actor["events"]} == {"admin-flo"}
    alice = cli_system.summary["customers"]["alice@example.com"]["customer"]
    by_customer = _json(
        await cli_system.run("--json", "audit", "list", "--customer", alice, token=token)
    )
    assert {event["stripe_customer_id"] for event in by_customer["events"]} <= {alice}


async def test_the_same_idempotency_key_proposes_once(cli_system: CliSystem) -> None:
    ana = cli_system.token("admin-ana")
    args = ("--json", "bounds", "propose", "--plan-changes", "2", "--idempotency-key", "cli-k1")
    first = _json(await cli_system.run(*args, token=ana))
    again = _json(await cli_system.run(*args, token=ana))
    assert again["change_id"] == first["change_id"]
    history = _json(await cli_system.run("--json", "bounds", "history", token=ana))
    assert [c["change_id"] for c in history["changes"]].count(first["change_id"]) == 1


async def test_an_escalated_refund_is_in_the_inbox_and_the_audit_log(
    cli_system: CliSystem,
) -> None:
    alice = cli_system.summary["customers"]["alice@example.com"]
    oldest = alice["charges"][0]
    answer = await cli_system.turn("alice", f"refund {oldest}", conversation="cli-window")
    assert answer["escalated"] is True, answer
    escalation_id = answer["escalation_id"]
    token = cli_system.token("admin-eve")

    inbox = _json(await cli_system.run("--json", "escalations", "list", token=token))
    found = next(e for e in inbox["escalations"] if e["escalation_id"] == escalation_id)
    assert found["state"] == "ESCALATION_STATE_OPEN"
    assert found["reason"] == "REFUND_OUTSIDE_WINDOW"
    assert found["action"] == "BILLING_ACTION_REFUND"
    assert found["details"]["charge_id"] == oldest
    # Oldest open first.
    opened = [e["created_at"] for e in inbox["escalations"]]
    assert opened == sorted(opened)

    table = await cli_system.run("escalations", "list", token=token)
    assert table.exit_code == 0, table.stderr
    assert escalation_id in table.stdout and "refund" in table.stdout

    shown = await cli_system.run("escalations", "show", escalation_id, token=token)
    assert shown.exit_code == 0, shown.stderr
    assert "REFUND_OUTSIDE_WINDOW" in shown.stdout and oldest in shown.stdout

    missing = await cli_system.run("escalations", "show", "esc_nope", token=token)
    assert missing.exit_code == 8, missing.stderr

    # The decision on alice's request, among the refund entries.
    refunds = _json(
        await cli_system.run("--json", "audit", "list", "--action", "refund", token=token)
    )
    assert refunds["events"]
    assert {e["action"] for e in refunds["events"]} == {"BILLING_ACTION_REFUND"}
    assert any(
        e["stripe_customer_id"] == alice["customer"] and e["outcome"].startswith("ESCALATE")
        for e in refunds["events"]
    ), refunds

    verified = _json(await cli_system.run("--json", "audit", "verify", token=token))
    assert verified["chain"]["intact"] is True
    assert int(verified["chain"]["checked"]) > 0

    # A contact's messages (a hand-off goes to the agents, not to her: none yet).
    contact = found["contact_id"]
    hers = _json(
        await cli_system.run("--json", "messages", "list", "--contact", contact, token=token)
    )
    assert all(m["contact_id"] == contact for m in hers["messages"])


async def test_messages_list_shows_the_workspace_outbox(cli_system: CliSystem) -> None:
    token = cli_system.token("admin-eve")
    answer = await cli_system.turn("alice", "talk to a human", conversation="cli-human")
    assert answer["escalated"] is True, answer

    async def handoffs() -> list[dict[str, Any]]:
        listed = _json(await cli_system.run("--json", "messages", "list", token=token))
        return [m for m in listed["messages"] if m["template"] == "TEMPLATE_HANDOFF"]

    deadline = asyncio.get_running_loop().time() + 10
    while not await handoffs():
        assert asyncio.get_running_loop().time() < deadline, "no hand-off message"
        await asyncio.sleep(0.2)
    dead = _json(
        await cli_system.run("--json", "messages", "list", "--status", "dead", token=token)
    )
    assert all(m["status"] == "MESSAGE_STATUS_DEAD" for m in dead["messages"])


async def test_a_dead_message_is_resent_once(cli_system: CliSystem) -> None:
    token = cli_system.token("admin-eve")
    # The mail server refuses the recipient for good: the message goes dead.
    cli_system.system.sink.store.queue_fault(Fault(550, "5.1.1 no such user", "rcpt"))
    sent = await cli_system.system.notifier.Send(
        notifier_pb2.SendRequest(
            workspace_id=WORKSPACE,
            recipient=notifier_pb2.Recipient(
                contact_id="ct_cli_dead", email="ct_cli_dead@example.com", name="Dee"
            ),
            template=notifier_pb2.TEMPLATE_ESCALATION_DECLINED,
            variables={
                "escalation_id": "esc_cli",
                "action_summary": "refund $49",
                "reason": "outside the window",
            },
            dedup_key="cli-dead-1",
        ),
        timeout=5,
    )
    message_id = sent.message.message_id

    async def listed(*args: str) -> list[dict[str, Any]]:
        answer = _json(await cli_system.run("--json", "messages", "list", *args, token=token))
        return [m for m in answer["messages"] if m["message_id"] == message_id]

    deadline = asyncio.get_running_loop().time() + 10
    while not await listed("--status", "dead"):
        assert asyncio.get_running_loop().time() < deadline, "the message never went dead"
        await asyncio.sleep(0.2)
    [dead] = await listed("--status", "dead")
    assert "550" in dead["last_error"], dead

    resent = await cli_system.run("messages", "resend", message_id, token=token)
    assert resent.exit_code == 0, resent.stderr
    assert message_id in resent.stdout and "queued" in resent.stdout
    while not await listed("--status", "sent", "--contact", "ct_cli_dead"):
        assert asyncio.get_running_loop().time() < deadline + 10, "never sent after the resend"
        await asyncio.sleep(0.2)
    assert len(cli_system.system.sink.store.select(to="ct_cli_dead@example.com")) == 1
    # Sent now: a resend is refused and changes nothing.
    again = await cli_system.run("messages", "resend", message_id, token=token)
    assert again.exit_code == 9
    assert "MESSAGE_NOT_RESENDABLE" in again.stderr


async def test_connect_stripe_and_webhook_health(cli_system: CliSystem) -> None:
    workspace = "ws_cli_connect"
    token = cli_system.token("admin-ops", (workspace,))
    webhook_url = f"{cli_system.system.edge_url}/api/stripe/webhooks/{workspace}"
    no_key = await cli_system.run(
        "-w", workspace, "connect-stripe", "--webhook-url", webhook_url, token=token
    )
    assert no_key.exit_code == 2 and "STRIPE_SECRET_KEY" in no_key.stderr

    connected = _json(
        await cli_system.run(
            "--json",
            "-w",
            workspace,
            "connect-stripe",
            "--webhook-url",
            webhook_url,
            "--secret-key-stdin",
            token=token,
            input=seed.DEMO_API_KEY + "\n",
        )
    )
    assert connected["webhook_endpoint_id"].startswith("we_")
    assert connected["livemode"] is False
    assert "invoice.payment_failed" in connected["enabled_events"]
    # The key never comes back.
    assert seed.DEMO_API_KEY not in json.dumps(connected)

    health = _json(await cli_system.run("--json", "-w", workspace, "webhook-check", token=token))
    assert health["registered"] is True and health["enabled"] is True
    assert health["url"] == webhook_url
    assert health["missing_event_types"] == []
    assert "events_received_24h" in health and "last_error" in health
    secret_id = health["webhook_secrets"][0]["secret_id"]

    table = await cli_system.run("-w", workspace, "webhook-check", token=token)
    assert table.exit_code == 0, table.stderr
    assert "events received (24h)" in table.stdout and secret_id in table.stdout

    retired = _json(
        await cli_system.run(
            "--json",
            "-w",
            workspace,
            "webhook-secret",
            "retire",
            secret_id,
            "--overlap-seconds",
            "3600",
            token=token,
        )
    )
    assert retired["secret"]["secret_id"] == secret_id
    assert retired["secret"]["retires_at"]


async def test_secrets_settings_and_recovery(cli_system: CliSystem) -> None:
    token = cli_system.token("admin-ops")
    added = _json(
        await cli_system.run("--json", "secrets", "add", "k-cli", "--generate", token=token)
    )
    assert added["secret"]["key_id"] == "k-cli" and added["secret"]["active"] is True
    assert len(added["generated_secret"]) >= 40
    listed = _json(await cli_system.run("--json", "secrets", "list", token=token))
    assert {"k1", "k-cli"} <= {s["key_id"] for s in listed["secrets"]}
    # Metadata only: no secret in the listing.
    assert added["generated_secret"] not in json.dumps(listed)
    assert HMAC_TEXT not in json.dumps(listed)
    short = await cli_system.run(
        "secrets", "add", "k-short", "--secret-stdin", token=token, input="short\n"
    )
    assert short.exit_code == 7, short.stderr
    assert "INVALID_ARGUMENT" in short.stderr and "secret" in short.stderr
    retired = _json(await cli_system.run("--json", "secrets", "retire", "k-cli", token=token))
    assert retired["secret"]["active"] is False

    changed = _json(
        await cli_system.run(
            "--json",
            "workspace",
            "settings",
            "set",
            "--sender-name",
            "Acme Billing",
            "--agent-inbox",
            "help@acme.test",
            token=token,
        )
    )
    assert changed["notifier"]["sender_name"] == "Acme Billing"
    assert changed["identity"]["customer_metadata_key"] == "askvault_user_id"
    read = _json(await cli_system.run("--json", "workspace", "settings", "get", token=token))
    assert read["notifier"]["agent_inbox"] == "help@acme.test"

    stats = _json(await cli_system.run("--json", "recovery", "stats", "--days", "14", token=token))
    assert len(stats["weeks"]) == 2
    assert set(stats["total"]) >= {"failed", "recovered_within_48h", "recovered", "recovery_rate"}
    assert sum(int(w["failed"]) for w in stats["weeks"]) == int(stats["total"]["failed"])


HMAC_TEXT = "cli-hmac-secret"


async def test_errors_name_what_is_missing(cli_system: CliSystem) -> None:
    none = await cli_system.run("bounds", "history")
    assert none.exit_code == 3
    assert "no admin credential" in none.stderr and "ASKVAULT_ADMIN_TOKEN" in none.stderr

    other = cli_system.token("admin-ops", ("ws_other",))
    wrong = await cli_system.run("bounds", "history", token=other)
    assert wrong.exit_code == 5
    assert f"not an admin of workspace '{WORKSPACE}'" in wrong.stderr

    expired = cli_system.token("admin-ops", iat=1_700_000_000, exp=1_700_003_600)
    late = await cli_system.run("bounds", "history", token=expired)
    assert late.exit_code == 4 and "expired" in late.stderr

    stranger = LocalIdentityProvider.generate(ISSUER, "someone-else").issue("admin-ops")
    forged = await cli_system.run("bounds", "history", token=stranger)
    assert forged.exit_code == 4
    assert "refused" in forged.stderr and "ADMIN_REQUIRED" in forged.stderr

    token = cli_system.token("admin-ops")
    with testing.refused_port() as port:
        down = await cli_system.run(
            "bounds", "history", token=token, ASKVAULT_POLICY_ADDR=f"127.0.0.1:{port}"
        )
        as_json = await cli_system.run(
            "--json", "bounds", "history", token=token, ASKVAULT_POLICY_ADDR=f"127.0.0.1:{port}"
        )
    assert down.exit_code == 6
    assert f"policy is unreachable at 127.0.0.1:{port}" in down.stderr
    assert json.loads(as_json.stderr)["error"]["code"] == "UNAVAILABLE"
    assert as_json.stdout == ""

    bad = await cli_system.run("bounds", "propose", "--time-zone", "Mars/Olympus_Mons", token=token)
    assert bad.exit_code == 7, bad.stderr
    assert "INVALID_ARGUMENT" in bad.stderr and "time_zone" in bad.stderr

    nowhere = await cli_system.run("bounds", "history", token=token, ASKVAULT_WORKSPACE=None)
    assert nowhere.exit_code == 2 and "--workspace" in nowhere.stderr


async def test_login_local_stores_a_private_credential(
    cli_system: CliSystem, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    stored = await cli_system.run(
        "login",
        "--local",
        "admin-lee",
        "--idp-dir",
        str(cli_system.idp_dir),
        "--issuer",
        ISSUER,
        ASKVAULT_CONFIG_DIR=str(home),
    )
    assert stored.exit_code == 0, stored.stderr
    token_file = home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    who = _json(await cli_system.run("--json", "whoami", ASKVAULT_CONFIG_DIR=str(home)))
    assert who["subject"] == "admin-lee" and who["workspaces"] == ["*"]
    # The next command finds it without --token.
    history = await cli_system.run("bounds", "history", ASKVAULT_CONFIG_DIR=str(home))
    assert history.exit_code == 0, history.stderr

    empty = await cli_system.run(
        "login",
        "--local",
        "admin-lee",
        "--idp-dir",
        str(tmp_path / "none"),
        ASKVAULT_CONFIG_DIR=str(home),
    )
    assert empty.exit_code == 3 and "no local identity provider" in empty.stderr

    logged_out = await cli_system.run("logout", ASKVAULT_CONFIG_DIR=str(home))
    assert logged_out.exit_code == 0 and not token_file.exists()


async def test_confirmation_flags_go_through_the_bounds_flow(cli_system: CliSystem) -> None:
    ana = cli_system.token("admin-ana")
    ben = cli_system.token("admin-ben")
    off = await cli_system.run("--json", "confirmation", "off", token=ana)
    change = _json(off)
    assert "waive" not in off.stdout and "confirm every money action" in off.stderr
    assert change["proposed"]["confirm_refunds"] is False
    if change["state"] == "BOUNDS_CHANGE_STATE_PENDING":
        _json(await cli_system.run("--json", "bounds", "approve", change["change_id"], token=ben))
    flags = _json(await cli_system.run("--json", "confirmation", "get", token=ana))
    assert flags == {
        "confirm_refunds": False,
        "confirm_plan_changes": False,
        "every_money_action_confirmed": True,
    }
    on = _json(await cli_system.run("--json", "confirmation", "on", token=ana))
    # Turning them on loosens nothing (a bound loosened earlier still counts as loosened).
    assert not any(name.startswith("confirm") for name in on["loosened_fields"]), on
    if on["state"] == "BOUNDS_CHANGE_STATE_PENDING":
        _json(await cli_system.run("--json", "bounds", "approve", on["change_id"], token=ben))
    flags = _json(await cli_system.run("--json", "confirmation", "get", token=ben))
    assert flags["confirm_refunds"] is True and flags["confirm_plan_changes"] is True


async def test_an_escalated_refund_is_approved_once_and_a_hand_off_denied(
    cli_system: CliSystem,
) -> None:
    token = cli_system.token("admin-ana")
    stripe = cli_system.system.stripe_client(seed.DEMO_API_KEY)
    alice = cli_system.summary["customers"]["alice@example.com"]
    oldest = alice["charges"][0]
    asked = await cli_system.turn("alice", f"refund {oldest}", conversation="cli-approve")
    assert asked["escalated"] is True, asked
    escalation_id = asked["escalation_id"]

    args = ("--json", "escalations", "approve", escalation_id, "--idempotency-key", "cli-ap")
    approved = _json(await cli_system.run(*args, token=token))
    assert approved["outcome"] == "ESCALATION_OUTCOME_EXECUTED", approved
    assert approved["stripe_object_id"].startswith("re_")
    # A script that retries with its key gets the same answer and refunds nothing more.
    assert _json(await cli_system.run(*args, token=token)) == approved
    refunds = await stripe.v1.refunds.list_async({"charge": oldest})
    assert [refund.id for refund in refunds.data] == [approved["stripe_object_id"]]
    shown = _json(await cli_system.run("--json", "escalations", "show", escalation_id, token=token))
    assert shown["state"] == "ESCALATION_STATE_EXECUTED"
    assert shown["decided_by"] == "admin-ana"
    # The customer is told, once.
    contact = shown["contact_id"]
    told = _json(
        await cli_system.run("--json", "messages", "list", "--contact", contact, token=token)
    )
    notices = [m for m in told["messages"] if m["template"] == "TEMPLATE_ESCALATION_APPROVED"]
    assert [m["message_id"] for m in notices] == [approved["notice_message_id"]]
    # Audited with the approver as actor.
    audit = _json(
        await cli_system.run("--json", "audit", "list", "--actor", "admin-ana", token=token)
    )
    kinds = {(e["kind"], e["subject_id"]) for e in audit["events"]}
    assert ("escalation.executed", escalation_id) in kinds

    handoff = await cli_system.turn("alice", "talk to a human", conversation="cli-deny")
    assert handoff["escalated"] is True, handoff
    denied = _json(
        await cli_system.run(
            "--json", "escalations", "deny", handoff["escalation_id"],
            "--reason", "We answered by email.", token=token,
        )
    )  # fmt: skip
    assert denied["outcome"] == "ESCALATION_OUTCOME_DECLINED"
    shown = _json(
        await cli_system.run("--json", "escalations", "show", handoff["escalation_id"], token=token)
    )
    assert shown["state"] == "ESCALATION_STATE_REJECTED"
    assert shown["decision_note"] == "We answered by email."
    told = _json(
        await cli_system.run("--json", "messages", "list", "--contact", contact, token=token)
    )
    declined = [m for m in told["messages"] if m["template"] == "TEMPLATE_ESCALATION_DECLINED"]
    assert [m["message_id"] for m in declined] == [denied["notice_message_id"]]


async def test_the_installed_command(cli_system: CliSystem) -> None:
    executable = Path(sys.executable).parent / "askvault"
    assert executable.exists(), "make venv installs .venv/bin/askvault"
    token = cli_system.token("admin-ops")
    environment = {
        key: value
        for key, value in {**os.environ, **cli_system.environment(token)}.items()
        if value is not None
    }

    async def askvault(*args: str, **extra: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(executable),
            *args,
            env={**environment, **extra},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await askvault("--json", "escalations", "list", "--state", "all")
    assert code == 0, err
    assert "escalations" in json.loads(out)
    with testing.refused_port() as port:
        code, out, err = await askvault(
            "bounds", "history", ASKVAULT_POLICY_ADDR=f"127.0.0.1:{port}"
        )
    assert code == 6 and out == ""
    assert err.startswith("askvault: error: policy is unreachable")
    assert "Traceback" not in err


def test_help_lists_every_command() -> None:
    from typer.testing import CliRunner

    from askvault_cli.main import app

    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for command in (
        "connect-stripe",
        "webhook-check",
        "webhook-secret",
        "bounds",
        "confirmation",
        "escalations",
        "audit",
        "recovery",
        "messages",
        "secrets",
        "workspace",
        "login",
    ):
        assert command in result.stdout

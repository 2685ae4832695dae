"""The edge's settings (environment variables of the same names, upper case)."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, SecretStr, field_validator

from runtime.settings import EncryptionKeys, ServiceSettings

_WORKSPACE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class EdgeSettings(ServiceSettings):
    """Everything of ServiceSettings (the gRPC fields are unused: the edge serves HTTP), plus
    the HTTP server, the four services it calls, deadlines, limits and webhook secrets."""

    # Address the HTTP server binds; port 0 picks a free port (tests).
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    # host:port of each service the edge calls.
    identity_target: str = "127.0.0.1:50061"
    policy_target: str = "127.0.0.1:50062"
    billing_target: str = "127.0.0.1:50063"
    notifier_target: str = "127.0.0.1:50064"
    # Admission control: requests served at once (health, readiness and metrics aside). A
    # request past it waits at most HTTP_QUEUE_WAIT_SECONDS for a place, with at most
    # HTTP_MAX_QUEUED others; otherwise it is refused at once with 503, code OVERLOADED and
    # Retry-After (OVERLOAD_RETRY_AFTER_SECONDS), before anything is read or claimed, rather
    # than left to time out. The same Retry-After goes with a service's OVERLOADED refusal.
    # Past saturation an accepted request waits about (in flight + queued) / throughput: 32 + 8
    # keeps that near 0.4 s at the ~100 status turns/s of a replica on 2 cores (32 + 32 made it
    # 0.6 s and the p99 over 1 s). In flight stays 32 so that 32 callers at once (the bench's
    # peak) never wait: with 16 + 16 a loaded machine refused many of them.
    http_max_in_flight: int = Field(default=32, ge=1)
    http_max_queued: int = Field(default=8, ge=0)
    http_queue_wait_seconds: float = Field(default=0.5, ge=0)
    overload_retry_after_seconds: int = Field(default=1, ge=1, le=600)
    # Largest request body accepted, in bytes (413 above it).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Longest chat message accepted, in characters.
    max_text_chars: int = Field(default=2000, ge=10)
    # Deadline of each RPC to identity, policy and notifier, in seconds.
    rpc_deadline_seconds: float = Field(default=2.0, gt=0)
    # Deadline of each RPC to the billing gateway, in seconds: short enough that "Stripe
    # unavailable" turns into a hand-off within 2 s of the visitor's message.
    billing_deadline_seconds: float = Field(default=1.2, gt=0)
    # Deadline of a webhook's IngestStripeEvent, in seconds (Stripe waits up to 10 s).
    webhook_deadline_seconds: float = Field(default=5.0, gt=0)
    # Turns (chat, tools, MCP, WhatsApp) per verified contact per minute, and requests per
    # client address per minute (before verification; see trusted_proxies).
    visitor_turns_per_minute: int = Field(default=30, ge=1)
    address_requests_per_minute: int = Field(default=120, ge=1)
    # How long an open escalation a contact waits on is left before a turn of theirs asks
    # policy about it again, in seconds (escalation_notices).
    escalation_recheck_seconds: float = Field(default=60.0, ge=0)
    # How long a proposal waits for "yes", in seconds.
    proposal_ttl_seconds: int = Field(default=600, ge=5)
    # The time zone replies speak in only when policy cannot be asked for the workspace's own
    # (GetWorkspaceTerms; policy answers Bounds.time_zone, else its DEFAULT_TIME_ZONE).
    workspace_timezone: str = "UTC"
    # How long a workspace's terms from policy (time zone, self-serve prices, refund caps) are
    # served from memory, in seconds: a bounds change reaches the replies within this bound
    # (policy itself decides on every action with the bounds in force). 0 asks every turn.
    workspace_terms_ttl_seconds: float = Field(default=30.0, ge=0, le=600)
    # The currency of amounts when none is known from the workspace's data.
    workspace_currency: str = "usd"
    # The WhatsApp app secret (signs X-Hub-Signature-256) and the verify token of the GET
    # handshake; empty refuses every WhatsApp request.
    whatsapp_app_secret: SecretStr = SecretStr("")
    whatsapp_verify_token: SecretStr = SecretStr("")
    # The workspace WhatsApp messages belong to ("phone_number_id:workspace,..." or a single
    # workspace id for every number).
    whatsapp_workspaces: str = ""
    # Keys that seal the credentials WhatsApp numbers are linked with: "k1:<base64 32
    # bytes>,..."; empty disables linking WhatsApp numbers from the chat.
    secrets_encryption_keys: EncryptionKeys = SecretStr("")
    # Where the customer returns after updating their card.
    card_update_return_url: str = "https://example.com/billing"
    # The address people's browsers reach the edge at (the confirmation page's links, e.g.
    # "https://billing-bot.example.com"); empty uses the address each request came to.
    public_url: str = ""
    # Linking a WhatsApp number needs proof: the chat shows a one-time code that must come
    # back as "LINK <code>" from that number. How long a code works, in seconds.
    whatsapp_link_code_ttl_seconds: int = Field(default=600, ge=1)
    # Wrong codes from a number that void its pending challenges.
    whatsapp_link_max_wrong_codes: int = Field(default=5, ge=1)
    # New link codes one contact may ask for per hour.
    whatsapp_link_challenges_per_hour: int = Field(default=5, ge=1)
    # The business's WhatsApp number as visitors dial it ("+14155550100"), shown in the chat
    # with the code (and as a wa.me link); empty says "our WhatsApp number".
    whatsapp_business_number: str = ""
    # Proxies in front of the edge (the Ingress controller's pods), comma-separated CIDRs.
    # Behind one of them the client address is the right-most X-Forwarded-For hop that is not
    # itself a trusted proxy; empty trusts no one (the socket peer is the client).
    trusted_proxies: str = ""
    # Turns per Stripe customer per minute, shared by every contact bound to the customer.
    customer_turns_per_minute: int = Field(default=120, ge=1)
    # Agent emails per workspace per hour for hand-offs of unverified visitors; over it the
    # escalation still opens (once per conversation) but no email goes out.
    unverified_handoff_emails_per_hour: int = Field(default=20, ge=0)
    # Optional LLM mode: chat turns answered by a model through an OpenAI-compatible
    # chat-completions API with the /v1/tools tools ("https://api.openai.com/v1", an Ollama or
    # vLLM "http://host:port/v1"), when the base URL and the model are set; empty: the rules
    # answer every turn. The rules answer too whenever the model fails, is slow or ungrounded.
    llm_base_url: str = ""
    llm_model: str = ""
    # Sent as "Authorization: Bearer <key>"; empty sends none (a local server).
    llm_api_key: SecretStr = SecretStr("")
    # Longest a turn waits for the model (all its rounds together), in seconds.
    llm_timeout_seconds: float = Field(default=8.0, gt=0)
    # Model calls per turn (tool calls, then the answer in words).
    llm_max_rounds: int = Field(default=4, ge=1, le=10)
    # Earlier lines of the conversation the model sees (the bot's and the verified visitor's).
    llm_history_lines: int = Field(default=6, ge=0, le=40)

    @field_validator("whatsapp_workspaces")
    @classmethod
    def _whatsapp_workspaces(cls, value: str) -> str:
        # A typo would route every inbound WhatsApp message to no workspace (or the wrong one).
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            number, sep, workspace = item.partition(":")
            if sep and not (number.isdigit() and _WORKSPACE_ID.match(workspace)):
                raise ValueError(f"{item!r} is not '<phone number id (digits)>:<workspace id>'")
            if not sep and (len(items) > 1 or not _WORKSPACE_ID.match(item)):
                raise ValueError(
                    "a single workspace id, or 'phone_number_id:workspace_id' pairs separated"
                    " by commas"
                )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        # A typo must fail at start, not silently trust nobody (or everybody).
        for part in (item.strip() for item in value.split(",")):
            if part:
                ipaddress.ip_network(part, strict=False)
        return value

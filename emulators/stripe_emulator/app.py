"""The aiohttp application: the `/v1` API, the admin endpoints and the public pages."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler

from stripe_emulator import (
    errors,
    events,
    faults,
    forms,
    lifecycle,
    pages,
    payments,
    render,
    seed,
    stories,
)
from stripe_emulator.request_log import RequestLog
from stripe_emulator.resources import (
    catalog,
    checkout,
    customers,
    invoices,
    money,
    platform,
    subscriptions,
)
from stripe_emulator.routing import Call, Router
from stripe_emulator.state import API_VERSION, Account, IdempotentResult, State
from stripe_emulator.webhooks import Dispatcher

Json = dict[str, Any]

log = logging.getLogger(__name__)

STATE_KEY = web.AppKey("state", State)
DISPATCHER_KEY = web.AppKey("dispatcher", Dispatcher)
FAULTS_KEY = web.AppKey("faults", faults.FaultTable)
ROUTER_KEY = web.AppKey("router", Router)
REQUEST_LOG_KEY = web.AppKey("request_log", RequestLog)
STATE_FILE_KEY = web.AppKey("state_file", Path)

# Order matters: fixed paths (`/v1/customers/search`) come before `{id}` patterns.
RESOURCE_ROUTERS = (
    customers.router,
    catalog.router,
    subscriptions.router,
    invoices.router,
    money.router,
    platform.router,
    checkout.router,
)


def api_router() -> Router:
    combined = Router()
    for router in RESOURCE_ROUTERS:
        combined.routes.extend(router.routes)
    return combined


@web.middleware
async def _forget_catch_ups(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request other than a GET may change what is due (an API write, a seed, a portal or
    checkout page's form): after it, every account catches up again on its next request."""
    try:
        return await handler(request)
    finally:
        if request.method not in ("GET", "HEAD"):
            request.app[STATE_KEY].caught_up.clear()


def create_app(state: State | None = None, *, state_file: Path | None = None) -> web.Application:
    app = web.Application(middlewares=[_forget_catch_ups])
    app[STATE_KEY] = state if state is not None else State()
    app[DISPATCHER_KEY] = Dispatcher(app[STATE_KEY])
    app[FAULTS_KEY] = faults.FaultTable()
    app[ROUTER_KEY] = api_router()
    app[REQUEST_LOG_KEY] = RequestLog()
    if state_file is not None:
        app[STATE_FILE_KEY] = state_file
        if state_file.exists():
            app[STATE_KEY].load_from(state_file)
    app.cleanup_ctx.append(_dispatcher_lifetime)
    app.router.add_route("*", "/v1/{tail:.*}", handle_api)
    app.router.add_get("/_emulator/health", admin_health)
    app.router.add_post("/_emulator/reset", admin_reset)
    app.router.add_post("/_emulator/seed", admin_seed)
    app.router.add_post("/_emulator/stories/reset", admin_reset_story)
    app.router.add_get("/_emulator/faults", admin_list_faults)
    app.router.add_post("/_emulator/faults", admin_add_fault)
    app.router.add_delete("/_emulator/faults", admin_clear_faults)
    app.router.add_get("/_emulator/webhooks", admin_webhook_log)
    app.router.add_get("/_emulator/requests", admin_request_log)
    app.router.add_delete("/_emulator/requests", admin_clear_request_log)
    app.router.add_post("/_emulator/webhooks/mode", admin_webhook_mode)
    app.router.add_post("/_emulator/webhooks/flush", admin_webhook_flush)
    app.router.add_post("/_emulator/accounts/restrict", admin_restrict)
    app.router.add_post("/_emulator/state/save", admin_save)
    app.router.add_get("/invoices/{token}", public_invoice_page)
    app.router.add_get("/invoices/{token}/pdf", public_invoice_pdf)
    app.router.add_get("/billing_portal/{token}", public_portal_page)
    app.router.add_post("/billing_portal/{token}", public_portal_update)
    app.router.add_get("/checkout/{token}", public_checkout_page)
    app.router.add_post("/checkout/{token}", public_checkout_complete)
    return app


async def _dispatcher_lifetime(app: web.Application) -> AsyncIterator[None]:
    dispatcher = app[DISPATCHER_KEY]
    await dispatcher.start()
    yield
    await dispatcher.stop()
    state_file = app.get(STATE_FILE_KEY)
    if state_file is not None:
        app[STATE_KEY].save_to(state_file)


# the API


def _json(body: Json, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, indent=2),
        status=status,
        content_type="application/json",
        headers=headers or {},
    )


def _api_key(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise errors.authentication_missing() from None
        return decoded.partition(":")[0]
    raise errors.authentication_missing()


def _authenticate(request: web.Request, state: State) -> Account:
    platform_account = state.account_for_key(_api_key(request))
    target = platform_account
    connected_id = request.headers.get("Stripe-Account")
    if connected_id:
        target = state.connected_account(platform_account, connected_id)
    if target.restriction == "access_revoked":
        raise errors.StripeError(
            403,
            "invalid_request_error",
            f"The provided key '{errors.redact_key(platform_account.api_key or '')}' does not "
            f"have access to account '{target.id}' (or that account does not exist). "
            "Application access may have been revoked.",
            code="account_invalid",
        )
    return target


async def _params(request: web.Request) -> Json:
    pairs = list(request.query.items())
    if request.can_read_body:
        body = await request.read()
        if body:
            content_type = request.content_type
            if content_type == "application/json":
                raise errors.invalid_request(
                    "Invalid request: the v1 API takes form-encoded bodies "
                    "(application/x-www-form-urlencoded)."
                )
            pairs.extend(parse_qsl(body.decode(), keep_blank_values=True))
    return forms.decode_pairs(pairs)


def _fingerprint(method: str, path: str, request_params: Json) -> str:
    canonical = json.dumps([method, path, request_params], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def handle_api(request: web.Request) -> web.StreamResponse:
    """Serves one API request and logs it (method, path, account, status, traceparent)."""
    response = await _serve_api(request)
    account = ""
    with contextlib.suppress(errors.StripeError):
        account = _authenticate(request, request.app[STATE_KEY]).id
    request.app[REQUEST_LOG_KEY].add(
        request.method,
        request.path,
        account,
        getattr(response, "status", 0),
        response.headers.get("Request-Id", ""),
        request.headers.get("traceparent", ""),
    )
    return response


async def _serve_api(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    request_id = "req_" + secrets.token_hex(7)
    headers = {
        "Request-Id": request_id,
        "Stripe-Version": request.headers.get("Stripe-Version", API_VERSION),
    }
    fault = request.app[FAULTS_KEY].take(request.method, request.path)
    if fault is not None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.drop:
            return _drop_connection(request)
        if fault.status is not None:
            error = fault.error()
            return _json(error.body(), error.status, {**headers, **error.headers})
    try:
        account = _authenticate(request, state)
        request_params = await _params(request)
        found = request.app[ROUTER_KEY].match(request.method, request.path)
        if found is None:
            raise errors.invalid_request(
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                status=404,
            )
        route, path_args = found
    except errors.StripeError as error:
        return _json(error.body(), error.status, {**headers, **error.headers})
    key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
    if key:
        headers["Idempotency-Key"] = key
        account.expire_idempotency(time.time())
        fingerprint = _fingerprint(request.method, request.path, request_params)
        saved = account.idempotency.get(key)
        if saved is not None:
            if saved.fingerprint != fingerprint:
                mismatch = errors.StripeError(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they "
                    f"were first used with. Try using a key other than '{key}' if you meant to "
                    "execute a different request.",
                )
                return _json(mismatch.body(), mismatch.status, headers)
            return _json(saved.body, saved.status, {**headers, "Idempotent-Replayed": "true"})
    call = Call(state, account, request_params, path_args, request_id, key)
    token = events.current_request.set(events.RequestInfo(request_id, key))
    try:
        # Subscriptions not on a test clock live on the wall clock: catch up before answering.
        lifecycle.catch_up(state, account, state.wall_time())
        status, body = 200, route.handler(call)
        saves = True
    except errors.StripeError as failure:
        status, body, saves = failure.status, failure.body(), failure.saves_idempotent_result
        headers.update(failure.headers)
    except Exception:
        # A bug in the emulator: answer like Stripe's own 500s so callers see an api_error.
        log.exception("emulator handler failed", extra={"path": request.path})
        status, saves = 500, False
        body = errors.StripeError(500, "api_error", "The emulator failed on this request.").body()
    finally:
        events.current_request.reset(token)
    if key and saves:
        account.idempotency[key] = IdempotentResult(
            _fingerprint(request.method, request.path, request_params), status, body, time.time()
        )
    return _json(body, status, headers)


def _drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the socket without answering, as a network failure mid-request would."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError


# admin


def _admin_account(state: State, body: Json) -> Account:
    api_key = str(body.get("api_key") or seed.DEMO_API_KEY)
    account = state.account_for_key(api_key)
    account_id = body.get("account")
    if account_id:
        account = state.connected_account(account, str(account_id))
    return account


async def _admin_body(request: web.Request) -> Json:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw:
        return {}
    parsed = json.loads(raw)
    if not isinstance(parsed, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return parsed


async def admin_health(request: web.Request) -> web.Response:
    return _json({"ok": True, "api_version": API_VERSION})


async def admin_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    request.app[DISPATCHER_KEY].reset()
    request.app[FAULTS_KEY].clear()
    request.app[REQUEST_LOG_KEY].clear()
    return _json({"reset": True})


async def admin_seed(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    summary = seed.seed_demo(
        request.app[STATE_KEY], api_key=str(body.get("api_key") or seed.DEMO_API_KEY)
    )
    return _json(summary)


async def admin_reset_story(request: web.Request) -> web.Response:
    """Puts one demo customer back in its seed story (``make demo`` before each play)."""
    body = await _admin_body(request)
    state = request.app[STATE_KEY]
    try:
        account = state.account_for_key(str(body.get("api_key") or seed.DEMO_API_KEY))
        changed = stories.reset(state, account, str(body.get("email") or ""))
    except errors.StripeError as failure:
        return _json({"error": failure.message}, 400)
    return _json(changed)


async def admin_list_faults(request: web.Request) -> web.Response:
    return _json({"faults": request.app[FAULTS_KEY].describe()})


async def admin_add_fault(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    try:
        fault = request.app[FAULTS_KEY].add(body)
    except (ValueError, TypeError) as failure:
        return _json({"error": str(failure)}, 400)
    return _json({"fault": fault.id, "faults": request.app[FAULTS_KEY].describe()})


async def admin_clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS_KEY].clear()
    return _json({"faults": []})


async def admin_webhook_log(request: web.Request) -> web.Response:
    dispatcher = request.app[DISPATCHER_KEY]
    return _json(
        {
            "mode": dispatcher.mode.__dict__,
            "pending": len(dispatcher.pending),
            "deliveries": dispatcher.log_entries,
        }
    )


async def admin_request_log(request: web.Request) -> web.Response:
    """The API requests served, oldest first; `?api_key=` or `?account=` narrows to one
    account."""
    account = request.query.get("account", "")
    api_key = request.query.get("api_key", "")
    if api_key:
        account = request.app[STATE_KEY].account_for_key(api_key).id
    return _json({"requests": request.app[REQUEST_LOG_KEY].as_json(account)})


async def admin_clear_request_log(request: web.Request) -> web.Response:
    request.app[REQUEST_LOG_KEY].clear()
    return _json({"requests": []})


async def admin_webhook_mode(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    mode = request.app[DISPATCHER_KEY].mode
    for name in ("enabled", "duplicates", "out_of_order"):
        if name in body:
            setattr(mode, name, bool(body[name]))
    return _json({"mode": mode.__dict__})


async def admin_webhook_flush(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    try:
        summary = await request.app[DISPATCHER_KEY].flush(float(body.get("timeout", 10)))
    except TimeoutError:
        return _json({"error": "webhook deliveries still pending after the timeout"}, 504)
    return _json(summary)


async def admin_restrict(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    mode = body.get("mode")
    if mode not in (None, "access_revoked", "charges_disabled"):
        return _json({"error": "mode is one of access_revoked, charges_disabled or null"}, 400)
    try:
        account = _admin_account(request.app[STATE_KEY], body)
    except errors.StripeError as error:
        return _json(error.body(), 400)
    account.restriction = mode
    return _json({"account": account.id, "restriction": mode})


async def admin_save(request: web.Request) -> web.Response:
    state_file = request.app.get(STATE_FILE_KEY)
    if state_file is None:
        return _json({"error": "started without --state-file"}, 400)
    request.app[STATE_KEY].save_to(state_file)
    return _json({"saved": str(state_file)})


# public pages


def _linked(request: web.Request, kind: str) -> tuple[Account, Json]:
    state = request.app[STATE_KEY]
    link = state.public_links.get(request.match_info["token"])
    if link is None:
        raise web.HTTPNotFound(text="unknown link")
    account = state.accounts[link[0]]
    found = account.find(kind, link[1])
    if found is None:
        raise web.HTTPNotFound(text="unknown link")
    return account, found


async def public_invoice_page(request: web.Request) -> web.Response:
    _, invoice = _linked(request, "invoice")
    pdf_url = str(invoice["invoice_pdf"])
    return web.Response(text=pages.invoice_page(invoice, pdf_url), content_type="text/html")


async def public_invoice_pdf(request: web.Request) -> web.Response:
    _, invoice = _linked(request, "invoice")
    body = await asyncio.to_thread(
        pages.invoice_pdf, render.render(_linked(request, "invoice")[0], invoice), "AskVault Demo"
    )
    return web.Response(
        body=body,
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="Invoice-{invoice["number"]}.pdf"'},
    )


async def public_portal_page(request: web.Request) -> web.Response:
    account, session = _linked(request, "billing_portal.session")
    customer = account.get("customer", str(session["customer"]))
    return web.Response(
        text=pages.portal_page(session, customer, str(request.url)), content_type="text/html"
    )


async def public_portal_update(request: web.Request) -> web.Response:
    """The customer picks a working test card: it becomes the default everywhere."""
    state = request.app[STATE_KEY]
    account, session = _linked(request, "billing_portal.session")
    customer = account.get("customer", str(session["customer"]))
    form = await request.post()
    token = str(form.get("payment_method") or "pm_card_visa")
    if token not in payments.TEST_CARDS:
        raise web.HTTPBadRequest(text="unknown test card")
    now = lifecycle.now_for(state, account, customer)
    method = payments.card_from_token(state, account, token, now, {})
    payments.attach(state, account, method, customer)
    before = customer["invoice_settings"]["default_payment_method"]
    customer["invoice_settings"]["default_payment_method"] = method["id"]
    events.emit(
        state,
        account,
        "customer.updated",
        customer,
        previous_attributes={"invoice_settings": {"default_payment_method": before}},
        created=now,
    )
    for subscription in account.all("subscription"):
        if subscription["customer"] == customer["id"] and subscription["default_payment_method"]:
            subscription["default_payment_method"] = method["id"]
    return_url = session.get("return_url")
    if return_url:
        raise web.HTTPSeeOther(str(return_url))
    return web.Response(text="Payment method updated.", content_type="text/plain")


async def public_checkout_page(request: web.Request) -> web.Response:
    account, session = _linked(request, "checkout.session")
    plan = account.table("checkout_plan")[str(session["id"])]
    price = account.get("price", str(plan["price"]))
    return web.Response(
        text=pages.checkout_page(session, price, str(request.url)), content_type="text/html"
    )


async def public_checkout_complete(request: web.Request) -> web.Response:
    """The customer subscribes on the page (by UPI, approving a new mandate for ``vpa``)."""
    state = request.app[STATE_KEY]
    account, session = _linked(request, "checkout.session")
    form = await request.post()
    vpa = str(form.get("vpa") or "customer@okaxis")
    try:
        checkout.complete(state, account, session, vpa)
    except errors.StripeError:
        raise web.HTTPConflict(text="This checkout is no longer open.") from None
    success_url = session.get("success_url")
    if success_url:
        raise web.HTTPSeeOther(str(success_url))
    return web.Response(text="Subscribed.", content_type="text/plain")


# running


@dataclass
class RunningEmulator:
    """A started emulator: `url` for `base_addresses={"api": url}`, `state` for inspection."""

    url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def state(self) -> State:
        return self.app[STATE_KEY]

    @property
    def dispatcher(self) -> Dispatcher:
        return self.app[DISPATCHER_KEY]

    @property
    def faults(self) -> faults.FaultTable:
        return self.app[FAULTS_KEY]

    @property
    def requests(self) -> RequestLog:
        """The API requests served."""
        return self.app[REQUEST_LOG_KEY]

    async def close(self) -> None:
        await self.runner.cleanup()


async def start(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    state: State | None = None,
    state_file: Path | None = None,
) -> RunningEmulator:
    """Start on `host:port` (0 picks a free port) inside the running event loop."""
    app = create_app(state, state_file=state_file)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    public_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{public_host}:{bound_port}"
    app[STATE_KEY].public_base_url = url
    return RunningEmulator(url, app, runner)


@contextlib.asynccontextmanager
async def running(**options: Any) -> AsyncIterator[RunningEmulator]:
    emulator = await start(**options)
    try:
        yield emulator
    finally:
        await emulator.close()

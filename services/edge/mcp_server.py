"""The same tools as an MCP server (the official SDK, streamable HTTP, stateless JSON).

The visitor's identity comes from the HTTP request's headers, exactly as for
``POST /v1/tools/{name}``; nothing a model puts in the arguments can name the visitor.

A money tool only quotes. When the MCP client declares URL-mode elicitation, the quote comes
back as a URL elicitation (error -32042, which needs no back-channel, so sessions stay
stateless): the client shows the person the edge's confirmation page, the person confirms
there, and the client retries the call, which then runs exactly the confirmed quote. The
model sees only the outcome. Other clients get the quote and relay it; the person confirms in
their own chat.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.shared.exceptions import UrlElicitationRequiredError
from starlette.responses import JSONResponse

from edge import tool_models, tools
from edge.confirmations import Confirmations
from edge.http_api import Edge


def _supports_url_elicitation(ctx: ServerRequestContext[Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and elicitation.url is not None


def _base_url(edge: Edge, ctx: ServerRequestContext[Any]) -> str:
    """Where the person's browser reaches the edge: the configured public address, else the
    address this request came to."""
    if edge.settings.public_url:
        return edge.settings.public_url.rstrip("/")
    base = getattr(ctx.request, "base_url", None)
    return str(base).rstrip("/") if base is not None else ""


def build(
    edge: Edge, confirmations: Confirmations
) -> tuple[StreamableHTTPSessionManager, StreamableHTTPASGIApp]:
    """The session manager (run it for the server's lifetime) and its ASGI app."""

    output_schema = tool_models.output_schema()

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.input_schema,
                    output_schema=output_schema,
                    annotations=types.ToolAnnotations.model_validate(tool.annotations),
                )
                for tool in tools.TOOLS.values()
            ]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        # The HTTP request's headers carry the visitor's identity (never the arguments).
        raw = getattr(ctx, "headers", None)
        if raw is None and ctx.request is not None:
            raw = getattr(ctx.request, "headers", None)
        headers = {str(key).lower(): str(value) for key, value in (raw or {}).items()}
        result = await edge.call_tool(headers, params.name, dict(params.arguments or {}))
        if isinstance(result, JSONResponse):
            body = json.loads(bytes(result.body))
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=body["error"]["message"])],
                structured_content=body,
                is_error=True,
            )
        quote = result.get("data", {}).get("quote")
        tool = tools.TOOLS[params.name]
        if (
            tool.moves_money
            and result["status"] == "needs_confirmation"
            and quote
            and quote.get("terms_hash")
            and _supports_url_elicitation(ctx)
        ):
            token = await confirmations.open_page(
                headers.get("x-askvault-workspace", ""),
                str(result["data"].get("conversation_id", "")),
                str(quote["quote_id"]),
            )
            if token:
                raise UrlElicitationRequiredError(
                    [
                        types.ElicitRequestURLParams(
                            message=f"Please confirm: {quote['summary']}",
                            url=f"{_base_url(edge, ctx)}/v1/confirm/{token}",
                            elicitation_id=str(quote["quote_id"]),
                        )
                    ],
                    "The customer must confirm this on the confirmation page; call the tool "
                    "again once they have.",
                )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=result["message"])],
            structured_content=result,
        )

    server: Server[Any] = Server(
        "askvault-billing",
        version="1",
        instructions=(
            "Billing tools for the verified visitor named by the request headers. Tools that "
            "move money only quote: the customer confirms the quote themselves, never you."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True)
    return manager, StreamableHTTPASGIApp(manager)

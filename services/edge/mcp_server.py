"""The same tools as an MCP server (the official SDK, streamable HTTP, stateless JSON).

The visitor's identity comes from the HTTP request's headers, exactly as for
``POST /v1/tools/{name}``; nothing a model puts in the arguments can name the visitor.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.responses import JSONResponse

from edge import tools
from edge.http_api import Edge


def build(edge: Edge) -> tuple[StreamableHTTPSessionManager, StreamableHTTPASGIApp]:
    """The session manager (run it for the server's lifetime) and its ASGI app."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.definition()["input_schema"],
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
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=result["message"])],
            structured_content=result,
        )

    server: Server[Any] = Server(
        "askvault-billing",
        version="1",
        instructions="Billing tools for the verified visitor named by the request headers.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True)
    return manager, StreamableHTTPASGIApp(manager)

"""The official Python MCP client calling a trivial tool in a loop: the reference for `cargo bench --bench mcp`.

Usage: mcp_client.py SERVER_SCRIPT CALLS stdio|URL  -> prints seconds per call (after 20 warm-up calls)
"""

import asyncio
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


async def loop(session: ClientSession, calls: int) -> float:
    await session.initialize()
    for i in range(20):
        await session.call_tool("add", {"a": i, "b": 1})
    started = time.perf_counter()
    for i in range(calls):
        await session.call_tool("add", {"a": i, "b": 1})
    return (time.perf_counter() - started) / calls


async def main() -> None:
    script, calls, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if target == "stdio":
        params = StdioServerParameters(command=sys.executable, args=[script, "stdio"])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                print(await loop(session, calls))
    else:
        async with streamable_http_client(target) as (read, write, *_):
            async with ClientSession(read, write) as session:
                print(await loop(session, calls))


asyncio.run(main())

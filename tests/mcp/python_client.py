"""A second, independent MCP client for the gateway tests: the official Python SDK (pip package `mcp`).

Run by agentguard-cli/tests/mcp_gateway.rs. Starts `agentguard mcp` in front of the reference filesystem server,
lists the tools, reads a file (allowed unasked), writes one (times out after 1 s: denied), and prints one JSON object
with what it saw.

    python3 python_client.py AGENTGUARD_BIN FILESYSTEM_SERVER_BIN ROOT AUDIT_FILE
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def main() -> None:
    agentguard, fs_server, root, audit = sys.argv[1:5]
    params = StdioServerParameters(
        command=agentguard,
        args=["mcp", "--timeout", "1s", "--audit", audit, "--name", "fs", "--", fs_server, root],
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            read_result = await session.call_tool("read_text_file", {"path": f"{root}/a.txt"})
            write_result = await session.call_tool("write_file", {"path": f"{root}/b.txt", "content": "x"})
            print(
                json.dumps(
                    {
                        "server_name": init.server_info.name,
                        "tools": sorted(t.name for t in tools.tools),
                        "read_is_error": bool(read_result.is_error),
                        "read_text": text_of(read_result),
                        "write_is_error": bool(write_result.is_error),
                        "write_text": text_of(write_result),
                    }
                ),
                flush=True,
            )


asyncio.run(main())

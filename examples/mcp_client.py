"""A scripted MCP client: one whole investigation through `interp mcp` over stdio, printed as a transcript.

    python examples/mcp_client.py --catalog interp.duckdb --feature-set mlp.6 --feature 5 [--scorers embedding]

It stands in for a capable agent (Claude Code, Cursor) to show what the server offers and records: it
reads the prompt and the feature's page, looks at examples and statistics, tests the most enriched token
in sentences of its own against sentences without it, checks the effect causally, and records a finding
built from what it measured. The server writes the session as a run, each call as an experiment, and
the finding as an explanation by `mcp`, scored on held-out examples.
"""

import argparse
import re
import sys

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

CLIENT = types.Implementation(name="scripted-example", version="1.0")


def shown(result: types.CallToolResult, lines: int = 6) -> str:
    body = "".join(block.text for block in result.content if isinstance(block, types.TextContent)).splitlines()
    kept = [line for line in body if not line.startswith(("<tool_result", "</tool_result"))][:lines]
    return "\n".join("    " + line for line in kept)


async def investigate(args: argparse.Namespace) -> None:
    server = StdioServerParameters(command=sys.executable, args=[
        "-m", "agent.cli", "mcp", "--catalog", args.catalog, "--feature-set", args.feature_set,
        "--device", args.device, "--scorers", args.scorers])
    async with stdio_client(server) as (read, write), ClientSession(read, write, client_info=CLIENT) as session:
        hello = await session.initialize()
        tools = (await session.list_tools()).tools
        print(f"connected to {hello.server_info.name} {hello.server_info.version}: {len(tools)} tools "
              f"({', '.join(tool.name for tool in tools)})")
        prompt = await session.get_prompt("investigate_feature", {"feature": str(args.feature)})
        print(f"prompt investigate_feature: {prompt.messages[0].content.text.splitlines()[0][:160]}...")

        async def call(name: str, **arguments) -> types.CallToolResult:
            result = await session.call_tool(name, {"feature": args.feature, **arguments})
            print(f"\n> {name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
                  + (" [error]" if result.is_error else ""))
            print(shown(result))
            return result

        await call("feature_summary")
        await call("top_examples", n=3)
        stats = await call("token_stats")
        found = re.search(r'tokens enriched at activating positions[^"]*"([^"]+)"', shown(stats, 20))
        token = found.group(1).strip() if found else "the"
        with_token = [f"I saw {token} there yesterday.", f"The word {token} came up twice.",
                      f"{token} and more {token}."]
        await call("activations_on", texts=with_token)
        await call("activations_on", texts=["A quiet afternoon by the river.", "Numbers: 4, 8, 15, 16."])
        await call("logit_effect", n=8)
        await call("ablate", texts=with_token[:2])
        await call("steer", prompt="The story begins", strength=8.0)
        finding = await call("record_finding", explanation=f'the token "{token}"',
                             evidence="token_stats enrichment; activations_on fired on sentences with it and not "
                             "on sentences without it")
        if finding.is_error:
            raise SystemExit("the finding was not recorded")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="interp.duckdb")
    parser.add_argument("--feature-set", default="mlp.6")
    parser.add_argument("--feature", type=int, default=5)
    parser.add_argument("--scorers", default="embedding")
    parser.add_argument("--device", default="auto")
    anyio.run(investigate, parser.parse_args())

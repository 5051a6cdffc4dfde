"""`interp mcp` as a real server process, driven by the official SDK's clients (stdio and streamable HTTP):
tools, resources and the prompt; calls recorded in the catalog; errors never run; the budget."""

import json
import sys
from pathlib import Path

import anyio
import duckdb
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from agent.investigate.toolbox import TextsArgs
from tests.agent.test_label import catalog  # noqa: F401  (fixture)
from tools.testing.servers import free_port, running

CLIENT = types.Implementation(name="test-client", version="1.0")


def server_args(catalog_path: Path, *extra: str) -> list[str]:
    return ["-m", "agent.cli", "mcp", "--catalog", str(catalog_path), "--feature-set", "resid_post.1",
            "--device", "cpu", *extra]


def drive(catalog_path: Path, script, *extra: str):
    """Run `script(session)` against a stdio server process; returns what it returns."""
    async def main():
        params = StdioServerParameters(command=sys.executable, args=server_args(catalog_path, *extra),
                                       cwd=str(Path(__file__).resolve().parents[2]))
        async with stdio_client(params) as (read, write), ClientSession(read, write, client_info=CLIENT) as session:
            await session.initialize()
            return await script(session)

    return anyio.run(main)


def text(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def rows(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_an_mcp_client_investigates_and_everything_lands_in_the_catalog(catalog):  # noqa: F811
    async def script(session: ClientSession) -> dict:
        seen: dict = {}
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        seen["tools"] = tools
        resources = [str(r.uri) for r in (await session.list_resources()).resources]
        seen["resources"] = resources
        templates = (await session.list_resource_templates()).resource_templates
        seen["template"] = templates[0].uri_template
        page = await session.read_resource(f"interp://feature/{resources[1].rsplit('/', 1)[1]}/0")
        seen["page"] = json.loads(page.contents[0].text)
        prompt = await session.get_prompt("investigate_feature", {"feature": "0"})
        seen["prompt"] = prompt.messages[0].content.text
        seen["activations"] = await session.call_tool("activations_on", {"feature": 0, "texts": ["the cat sat"]})
        seen["ablate"] = await session.call_tool("ablate", {"feature": 0, "texts": ["the dog ran"]})
        seen["summary"] = await session.call_tool("feature_summary", {"feature": 0})
        seen["invalid"] = await session.call_tool("activations_on", {"feature": 0})
        seen["out_of_range"] = await session.call_tool("ablate", {"feature": 10**6, "texts": ["x"]})
        with pytest.raises(MCPError, match="Unknown tool: score_explanation"):
            await session.call_tool("score_explanation", {"feature": 0, "explanation": "cats"})
        seen["finding"] = await session.call_tool("record_finding", {
            "feature": 0, "explanation": "animal words", "evidence": "activations_on fired on cat"})
        return seen

    seen = drive(catalog, script)
    tools = seen["tools"]
    assert {"activations_on", "ablate", "steer", "patch", "probe", "top_examples", "record_finding",
            "list_feature_sets", "list_features", "feature_summary"} <= set(tools)
    assert "score_explanation" not in tools  # held-out scores are never shown to the agent
    # The toolbox's own schema, plus the feature set a call may name (every set of the catalog is served).
    schema = tools["activations_on"].input_schema
    assert {k: v for k, v in schema["properties"].items() if k != "feature_set"} == \
        TextsArgs.model_json_schema()["properties"]
    assert "feature_set" in schema["properties"] and "feature_set" not in schema.get("required", [])
    assert "feature_set" not in tools["list_feature_sets"].input_schema.get("properties", {})
    assert seen["resources"][0] == "interp://feature-sets" and seen["template"] == "interp://feature/{feature_set}/{feature}"
    page = seen["page"]
    assert page["feature"] == 0 and set(page["examples"]) == {"top", "quantile", "random"}
    assert "held-out split is kept" in seen["prompt"] and "feature 0 of feature set resid_post.1" in seen["prompt"]
    for name in ("activations", "ablate", "summary"):
        assert not seen[name].is_error and text(seen[name]).startswith("<tool_result"), name
    assert seen["invalid"].is_error and "invalid arguments, not run" in text(seen["invalid"])
    assert seen["out_of_range"].is_error and "feature 1000000 is not in feature set" in text(seen["out_of_range"])
    assert not seen["finding"].is_error and "scored on held-out examples you do not see" in text(seen["finding"])

    ((run_id, status, config),) = rows(catalog, "SELECT run_id, status, config FROM runs WHERE kind = 'mcp'")
    assert status == "complete" and json.loads(config)["client"] == "test-client 1.0"
    logged = rows(catalog, f"SELECT tool, ok, explanation_id FROM experiments WHERE run_id = '{run_id}' ORDER BY step")
    assert [(tool, ok) for tool, ok, _ in logged] == [
        ("activations_on", True), ("ablate", True), ("feature_summary", True), ("activations_on", False),
        ("ablate", False), ("score_explanation", False), ("record_finding", True)]
    explanation_id = logged[-1][2]
    ((explainer, llm, text_, run),) = rows(catalog, "SELECT explainer, llm, text, run_id FROM explanations "
                                                    f"WHERE explanation_id = '{explanation_id}'")
    assert (explainer, llm, text_, run) == ("mcp", "mcp:test-client 1.0", "animal words", run_id)
    scored = rows(catalog, f"SELECT scorer, metric FROM scores WHERE explanation_id = '{explanation_id}' "
                           "AND status = 'ok'")
    assert ("embedding", "auroc") in scored


def test_the_budget_ends_a_session_that_keeps_calling(catalog):  # noqa: F811
    async def script(session: ClientSession) -> list[types.CallToolResult]:
        return [await session.call_tool("list_feature_sets", {}) for _ in range(5)]

    results = drive(catalog, script, "--session-tool-calls", "3")
    assert [r.is_error for r in results] == [False, False, False, True, True]
    assert "this session has spent 3 tool calls" in text(results[3])
    ((run_id, status),) = rows(catalog, "SELECT run_id, status FROM runs WHERE kind = 'mcp'")
    assert status == "complete"
    assert rows(catalog, f"SELECT count(*) FROM experiments WHERE run_id = '{run_id}'") == [(3,)]


def test_streamable_http_on_loopback(catalog):  # noqa: F811
    port = free_port()
    command = [sys.executable, *server_args(catalog, "--http", str(port))]
    with running(command, f"http://127.0.0.1:{port}/mcp"):
        async def main() -> types.CallToolResult:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), \
                    ClientSession(read, write, client_info=CLIENT) as session:
                await session.initialize()
                return await session.call_tool("activations_on", {"feature": 1, "texts": ["a cat"]})

        result = anyio.run(main)
    assert not result.is_error and "feature 1 on your texts" in text(result)


def test_one_server_serves_every_feature_set_and_records_which(catalog):  # noqa: F811
    """The tiny catalog holds two sets (mlp.1 neurons, resid_post.1 SAE latents) and the server names no
    default, so each call names its set."""
    async def script(session: ClientSession) -> dict:
        return {
            "unnamed": await session.call_tool("activations_on", {"feature": 0, "texts": ["a cat"]}),
            "neurons": await session.call_tool("activations_on", {"feature": 0, "texts": ["a cat"],
                                                                  "feature_set": "mlp.1"}),
            "latents": await session.call_tool("feature_summary", {"feature": 2, "feature_set": "resid_post.1"}),
            "unknown": await session.call_tool("feature_summary", {"feature": 2, "feature_set": "nope.9"}),
            "sets": await session.call_tool("list_feature_sets", {}),
        }

    async def main_():
        params = StdioServerParameters(command=sys.executable, args=["-m", "agent.cli", "mcp", "--catalog",
                                       str(catalog), "--device", "cpu"], cwd=str(Path(__file__).resolve().parents[2]))
        async with stdio_client(params) as (read, write), ClientSession(read, write, client_info=CLIENT) as session:
            await session.initialize()
            return await script(session)

    seen = anyio.run(main_)
    assert seen["unnamed"].is_error and "which feature set?" in text(seen["unnamed"])
    assert not seen["neurons"].is_error and "feature 0 on your texts" in text(seen["neurons"])
    assert not seen["latents"].is_error and "feature 2 of resid_post.1-sae-" in text(seen["latents"])
    assert seen["unknown"].is_error and "no feature set 'nope.9'" in text(seen["unknown"])
    assert "mlp.1-" in text(seen["sets"]) and "resid_post.1-sae-" in text(seen["sets"])
    logged = rows(catalog, "SELECT tool, ok, arguments FROM experiments ORDER BY step")
    sets = [json.loads(arguments).get("feature_set") for _, _, arguments in logged]
    assert sets[0] is None and sets[1].startswith("mlp.1-") and sets[2].startswith("resid_post.1-sae-")
    assert sets[3] == "nope.9" and sets[4] is None


def test_an_mcp_client_traces_then_ablates_a_node_it_found(tmp_path, tiny_models):
    """A catalog with one transcoder layer cached: the client traces a prompt, reads which node lies in this
    feature set, and ablates that latent, both calls recorded."""
    import re

    from tests.tracing import PROMPT as prompt
    from tests.tracing import transcoder_catalog

    catalog_path, _ = transcoder_catalog(tiny_models["llama"], tmp_path, 2, label=False)

    async def script(session: ClientSession) -> dict:
        traced = await session.call_tool("trace", {"prompt": prompt, "n": 30})
        found = re.search(r"ablate/steer it as feature (\d+)", text(traced))
        ablated = None if found is None else await session.call_tool(
            "ablate", {"feature": int(found.group(1)), "texts": [prompt]})
        return {"traced": traced, "ablated": ablated}

    async def main_():
        params = StdioServerParameters(command=sys.executable, args=[
            "-m", "agent.cli", "mcp", "--catalog", str(catalog_path), "--feature-set", "mlp_in.2", "--device", "cpu"],
            cwd=str(Path(__file__).resolve().parents[2]))
        async with stdio_client(params) as (read, write), ClientSession(read, write, client_info=CLIENT) as session:
            await session.initialize()
            return await script(session)

    seen = anyio.run(main_)
    assert not seen["traced"].is_error, text(seen["traced"])
    assert "most influential feature nodes" in text(seen["traced"]) and "replacement score" in text(seen["traced"])
    assert seen["ablated"] is not None and not seen["ablated"].is_error
    assert "zeroing feature" in text(seen["ablated"])
    logged = rows(catalog_path, "SELECT tool, ok FROM experiments ORDER BY step")
    assert logged == [("trace", True), ("ablate", True)]

"""The free tool-calling agent, for capable endpoints that support tool calls: a LangGraph loop of two
nodes, the model (which may ask for tool calls) and the tools (run through the validating toolbox),
until the model answers without calling a tool or a budget is spent.

Budgets cap tool calls and LLM tokens per question; when one is spent, the model is asked once more,
without tools, to answer from what it has. Every tool request, valid or not, and every answer is logged.
"""

import operator
import time
from dataclasses import dataclass
from typing import Annotated, TypedDict, cast

from langgraph.graph import END, START, StateGraph

from agent.investigate.toolbox import Toolbox
from tools.errors import InterpError
from tools.llm.interface import AgentTurn, ChatLLM, LLMError, ToolCallingLLM, Usage

ANSWER_TOKENS = 512


class AgentState(TypedDict, total=False):
    messages: Annotated[list[dict], operator.add]
    tool_calls: int
    tokens: int
    stop: str
    started: float
    """When the question began (time.time()), for the time budget."""


@dataclass(frozen=True)
class Budget:
    tool_calls: int = 12
    tokens: int = 60_000
    seconds: float = 600.0
    """Wall-clock time per question: one tool call can be expensive (patch_sweep runs layers x positions
    forward passes), so counting calls alone does not bound a question."""

    def __post_init__(self):
        if self.tool_calls <= 0 or self.tokens <= 0 or self.seconds <= 0:
            raise InterpError(f"budgets must be positive, got {self.tool_calls} tool calls, {self.tokens} tokens "
                              f"and {self.seconds:g} seconds")


def require_tool_calling(llm: ChatLLM) -> ToolCallingLLM:
    if not isinstance(llm, ToolCallingLLM):
        raise InterpError(f"{llm.name} cannot call tools; use the fixed graph (--graph fixed), which works with "
                          "any LLM, or an OpenAI-compatible endpoint that supports tool calls")
    return llm


def assistant_message(turn: AgentTurn) -> dict:
    message: dict = {"role": "assistant", "content": turn.text}
    if turn.tool_calls:
        message["tool_calls"] = [{"id": call.id, "type": "function",
                                  "function": {"name": call.name, "arguments": call.arguments}}
                                 for call in turn.tool_calls]
    return message


class FreeAgent:
    def __init__(self, llm: ChatLLM, toolbox: Toolbox, budget: Budget | None = None):
        self.llm = require_tool_calling(llm)
        self.toolbox = toolbox
        self.budget = budget or Budget()
        self.usage = Usage()

    def spent(self, state: AgentState) -> str:
        if state.get("tool_calls", 0) >= self.budget.tool_calls:
            return "tool-call budget"
        if state.get("tokens", 0) >= self.budget.tokens:
            return "token budget"
        if time.time() - state.get("started", time.time()) >= self.budget.seconds:
            return "time budget"
        return ""

    def model(self, state: AgentState) -> AgentState:
        exhausted = self.spent(state)
        messages = state["messages"]
        try:
            if exhausted:
                note = {"role": "user", "content": f"The {exhausted} is spent: answer now from the results you have."}
                completion = self.llm.chat(messages + [note], max_tokens=ANSWER_TOKENS)
                turn, new = AgentTurn(completion.text, [], completion.usage), [note]
            else:
                turn, new = self.llm.chat_tools(messages, self.toolbox.schemas(), ANSWER_TOKENS), []
        except LLMError as error:
            if exhausted or error.status_code != 400:
                raise
            raise InterpError(f"{self.llm.name} rejected a request with tools ({error}); use the fixed graph "
                              "(--graph fixed) or an endpoint that supports tool calls") from None
        self.usage = self.usage + turn.usage
        self.toolbox.log_llm("turn", {"tool_calls": [c.name for c in turn.tool_calls]}, turn.text)
        return {"messages": new + [assistant_message(turn)], "tokens": state.get("tokens", 0) + turn.usage.total,
                "stop": exhausted or ("" if turn.tool_calls else "answered")}

    def tools(self, state: AgentState) -> AgentState:
        requests = state["messages"][-1].get("tool_calls", [])
        used = state.get("tool_calls", 0)
        replies = []
        for request in requests:
            function = request["function"]
            if used >= self.budget.tool_calls:
                content = "error: tool-call budget spent, not run"
            else:
                content = self.toolbox.call(function["name"], function["arguments"]).result
                used += 1
            replies.append({"role": "tool", "tool_call_id": request["id"], "content": content})
        return {"messages": replies, "tool_calls": used}

    def route(self, state: AgentState) -> str:
        return END if state.get("stop") else "tools"

    def graph(self, checkpointer=None):
        """`checkpointer` keeps the conversation across questions (`interp ask` sessions)."""
        builder = StateGraph(AgentState)
        builder.add_node("model", self.model)
        builder.add_node("tools", self.tools)
        builder.add_edge(START, "model")
        builder.add_conditional_edges("model", self.route, ["tools", END])
        builder.add_edge("tools", "model")
        return builder.compile(checkpointer=checkpointer)

    @property
    def recursion_limit(self) -> int:
        return 2 * self.budget.tool_calls + 6  # every tool round is two steps, plus the final answer

    def run(self, messages: list[dict], on_step=None) -> AgentState:
        state: AgentState = {"messages": messages, "tool_calls": 0, "tokens": 0, "started": time.time()}
        for update in self.graph().stream(state, {"recursion_limit": self.recursion_limit}, stream_mode="updates"):
            for name, values in update.items():
                values = values or {}
                state["messages"] = state["messages"] + values.get("messages", [])
                state |= cast(AgentState, {key: value for key, value in values.items() if key != "messages"})
                if on_step:
                    on_step(name, values)
        return state

"""The two ask graphs, each with the same face: inputs for a question, the answer from the final state. The
fixed graph works with any LLM; the free graph lets a tool-calling LLM choose its experiments."""

import operator
import time
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

from agent.ask.planner import plan_experiments, usable_answer
from agent.investigate.free_agent import Budget, FreeAgent
from agent.investigate.measure import TEST_SENTENCES, call, list_items, measured
from agent.investigate.prompted import PromptedSteps
from agent.investigate.toolbox import Toolbox
from prompts import load_prompt
from tools.llm.interface import ChatLLM, Usage

TEXTS_TOKENS = 150
CONTROL_WINDOWS = 8
ANSWER_TOKENS = 160
HISTORY_TURNS = 3


class FixedState(TypedDict, total=False):
    feature: int
    question: str
    subject: str
    plan: list[dict]
    results: str
    answer: str
    history: Annotated[list[dict], operator.add]


class FixedAsk(PromptedSteps):
    """Any LLM: it writes test sentences and the answer; the graph chooses and runs the experiments."""

    name = "fixed"
    prompt_names = ("ask_texts", "ask_answer")
    recursion_limit = 12

    def plan(self, state: FixedState) -> FixedState:
        plan = plan_experiments(state["question"], self.toolbox.bench.record(state["feature"]))
        return {"plan": list(plan.calls), "subject": plan.subject}

    def write_texts(self, state: FixedState) -> FixedState:
        subject, feature = state["subject"], state["feature"]
        answer = self.write("texts", "ask_texts", TEXTS_TOKENS, subject=subject, n=str(TEST_SENTENCES))
        # With no usable sentences the subject itself is the one test text: weak, but an experiment. The
        # control is ordinary corpus text, not LLM-written "other" sentences, which a small LLM gets wrong.
        tests = [call("activations_on", f'Sentences written to contain "{subject}":', feature=feature,
                      texts=list_items(answer) or [subject]),
                 call("top_examples", "Ordinary corpus text (random windows), for comparison:", feature=feature,
                      bucket="random", n=CONTROL_WINDOWS)]
        return {"plan": tests + state["plan"]}

    def experiment(self, state: FixedState) -> FixedState:
        lines = []
        for step in state["plan"]:
            lines += measured(step, self.toolbox.call(step["tool"], step["arguments"]))
        return {"results": "\n".join(lines)}

    def answer(self, state: FixedState) -> FixedState:
        # Earlier questions only, for follow-ups ("and on dogs?"): a small LLM shown an earlier answer repeats it.
        earlier = [turn["question"] for turn in state.get("history", [])[-HISTORY_TURNS:]]
        history = "".join(f"Earlier question: {question}\n" for question in earlier)
        bench = self.toolbox.bench
        text = self.write("answer", "ask_answer", ANSWER_TOKENS, feature=str(state["feature"]),
                          kind=bench.feature_set["kind"], history=history, results=state["results"],
                          question=state["question"])
        # The measurements close every answer: the evidence stands even where a small LLM's prose falls short.
        answer = f"{usable_answer(text)}\n\nMeasured:\n{state['results']}"
        return {"answer": answer,
                "history": [{"feature": state["feature"], "question": state["question"], "answer": answer}]}

    def route(self, state: FixedState) -> str:
        return "write_texts" if state.get("subject") else "experiment"

    def graph(self, checkpointer):
        builder = StateGraph(FixedState)
        for name in ("plan", "write_texts", "experiment", "answer"):
            builder.add_node(name, getattr(self, name))
        builder.add_edge(START, "plan")
        builder.add_conditional_edges("plan", self.route, ["write_texts", "experiment"])
        builder.add_edge("write_texts", "experiment")
        builder.add_edge("experiment", "answer")
        builder.add_edge("answer", END)
        return builder.compile(checkpointer=checkpointer)

    def inputs(self, previous: dict, question: str, feature: int) -> dict:
        return {"feature": feature, "question": question, "subject": "", "plan": [], "results": "", "answer": ""}

    def answer_of(self, values: dict) -> str:
        return values.get("answer", "")


def unanswered(messages: list[dict]) -> list[dict]:
    """Tool replies for calls a stopped question left without one: endpoints refuse a conversation where
    an assistant's tool call has no reply."""
    if not messages or messages[-1].get("role") != "assistant":
        return []
    return [{"role": "tool", "tool_call_id": request["id"], "content": "error: the question was stopped, not run"}
            for request in messages[-1].get("tool_calls", [])]


class FreeAsk:
    """A tool-calling LLM chooses the experiments; the conversation carries over between questions."""

    name = "free"

    def __init__(self, llm: ChatLLM, toolbox: Toolbox, budget: Budget):
        self.agent = FreeAgent(llm, toolbox, budget)
        feature_set = toolbox.bench.feature_set
        prompt = load_prompt("ask_system")
        self.llm_name, self.prompt_hash = llm.name, prompt.sha256
        self.system = prompt.render(
            feature_set=feature_set["feature_set_id"], kind=feature_set["kind"], hook=feature_set["hook"],
            model=feature_set["model"])
        self.recursion_limit = self.agent.recursion_limit

    @property
    def usage(self) -> Usage:
        return self.agent.usage

    def graph(self, checkpointer):
        return self.agent.graph(checkpointer)

    def inputs(self, previous: dict, question: str, feature: int) -> dict:
        messages = previous.get("messages", [])
        new = ([] if messages else [{"role": "system", "content": self.system}]) + unanswered(messages)
        new.append({"role": "user", "content": f"About feature {feature}: {question}"})
        # Budgets are per question: the counters start again while the messages accumulate.
        return {"messages": new, "tool_calls": 0, "tokens": 0, "stop": "", "started": time.time()}

    def answer_of(self, values: dict) -> str:
        replies = [m for m in values.get("messages", []) if m["role"] == "assistant" and m.get("content")]
        return replies[-1]["content"].strip() if replies else "(the agent wrote no answer)"

"""The explainer agent's tools: typed functions over one feature set, each with a JSON schema (from its
pydantic argument model) and a short text result an LLM can read.

Every call goes through `Toolbox.call`, which validates the arguments against the schema first: a bad
call is returned to the LLM as an error and never executed. Results are untrusted data (corpus text,
model generations): their tokens are escaped so they cannot close the `<tool_result>` delimiter or
forge a mark, and every call, good or bad, is appended to the experiment log.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from agent.investigate.workbench import Workbench
from agent.labeling.token_stats import token_statistics
from evals.records import ActivationRecord, activation_level, active_positions, display_token, marked_text
from tools.errors import InterpError

MAX_TEXTS = 8
MAX_TEXT_CHARS = 400
TRACE_MAX_FEATURES = 2048
"""Feature nodes a tool call's graph visits (most influential first): seconds on a CPU for a short prompt."""


class FeatureArgs(BaseModel, extra="forbid"):
    feature: int = Field(ge=0, description="feature index in this feature set")


class TopExamplesArgs(FeatureArgs):
    bucket: Literal["top", "quantile", "random"] = "top"
    n: int = Field(5, ge=1, le=20, description="how many examples")


class TextsArgs(FeatureArgs):
    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS, description="short texts to run the model on")


class LogitEffectArgs(FeatureArgs):
    n: int = Field(10, ge=1, le=30)


class SteerArgs(FeatureArgs):
    prompt: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    strength: float = Field(8.0, ge=-100, le=100, description="added to the feature's value at every position")


class SearchArgs(BaseModel, extra="forbid"):
    query: str = Field(min_length=1, max_length=200)
    n: int = Field(5, ge=1, le=20)


class PatchArgs(BaseModel, extra="forbid"):
    clean: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="prompt whose answer is `target`")
    corrupt: str = Field(min_length=1, max_length=MAX_TEXT_CHARS,
                         description="same number of tokens, one detail changed, answer `foil`")
    target: str = Field(min_length=1, max_length=40, description="one-token answer of the clean prompt")
    foil: str = Field(min_length=1, max_length=40, description="one-token answer of the corrupt prompt")


class PatchSiteArgs(PatchArgs):
    hook: str = Field(description="hook point, e.g. resid_pre.3, mlp.6, attn.2")
    positions: list[int] | None = Field(None, max_length=64, description="token positions (0 is BOS); all if omitted")


class ProbeArgs(BaseModel, extra="forbid"):
    positive_texts: list[str] = Field(min_length=3, max_length=24, description="texts with the concept")
    negative_texts: list[str] = Field(min_length=3, max_length=24, description="texts without it")
    hook: str | None = Field(None, description="hook point; omitted: this feature set's own hook and features")


class TraceArgs(BaseModel, extra="forbid"):
    prompt: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="text whose next token to explain")
    target: str | None = Field(None, min_length=1, max_length=40,
                               description="one-token output to explain (mind a leading space); omitted: the model's "
                                           "top predictions")
    n: int = Field(10, ge=1, le=30, description="feature nodes to list")


class FindingArgs(FeatureArgs):
    explanation: str = Field(min_length=1, max_length=200)
    evidence: str = Field(min_length=1, max_length=1000, description="which tool results support it")


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    arguments: type[BaseModel]
    run: Callable[[BaseModel], str]

    def schema(self) -> dict:
        """The OpenAI tool-calling format."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.arguments.model_json_schema()}}


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict
    ok: bool
    result: str
    seconds: float


class ToolWatcher(Protocol):
    """Sees each call as it starts and ends, so a terminal can stream an agent's experiments."""

    def started(self, name: str, arguments: dict | str) -> None: ...

    def finished(self, call: "ToolCall") -> None: ...


def example_lines(records: list[ActivationRecord], max_act: float) -> str:
    lines = []
    for number, record in enumerate(records, 1):
        positions = active_positions(record)
        peak = activation_level(record.max_value, max_act)
        lines.append(f"{number}. (peak {peak}/10) {marked_text(record, set(positions))}")
    return "\n".join(lines) or "(none)"


@dataclass
class Toolbox:
    """No tool scores an explanation: the held-out examples are for the final score alone, and an agent shown
    held-out scores while it searches fits its explanation to them (the free agent once had such a tool)."""

    bench: Workbench
    log: list[ToolCall] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    watcher: ToolWatcher | None = None

    def __post_init__(self):
        self.tools = {tool.name: tool for tool in (
            Tool("top_examples", "Cataloged excerpts where the feature fires, activating tokens marked <<like this>> "
                 "(explain split only; the held-out examples are kept for scoring).", TopExamplesArgs,
                 self.top_examples),
            Tool("activations_on", "Run the model on texts you write and show where the feature fires, on a 0-10 "
                 "scale relative to its max over the corpus.", TextsArgs, self.activations_on),
            Tool("token_stats", "Tokens and two-token sequences the feature fires on far more often than the "
                 "corpus would predict.", FeatureArgs, self.token_stats),
            Tool("logit_effect", "Tokens the feature makes more and less likely as the next token (direct logit "
                 "effect through the unembedding).", LogitEffectArgs, self.logit_effect),
            Tool("ablate", "Zero the feature on texts and report how the loss and next-token predictions change.",
                 TextsArgs, self.ablate),
            Tool("steer", "Add strength x the feature's direction and compare greedy continuations of a prompt.",
                 SteerArgs, self.steer),
            Tool("search_catalog", "Features of any cataloged set whose explanation matches a description.",
                 SearchArgs, self.search_catalog),
            Tool("patch", "Activation patching: run the corrupt prompt with the clean prompt's activation at one hook "
                 "(and positions) and report how much of the clean logit difference (target - foil) comes back.",
                 PatchSiteArgs, self.patch),
            Tool("patch_sweep", "Patch the residual stream before every layer at every position, one site at a "
                 "time, and show the recovered fraction of the clean logit difference as a layer x position grid.",
                 PatchArgs, self.patch_sweep),
            Tool("probe", "Train a linear probe (logistic regression on each text's mean activation) to tell positive "
                 "from negative texts; held-out accuracy and the features most aligned with its direction.",
                 ProbeArgs, self.probe),
            Tool("trace", "Attribution graph of a prompt's next token through the transcoders this feature set "
                 "comes from: the transcoder features (layer/latent at a token) that most drive the output, with "
                 "their labels. Test what it claims with ablate and steer. Needs a transcoder feature set.",
                 TraceArgs, self.trace),
            Tool("record_finding", "Record your explanation of the feature and the evidence for it.", FindingArgs,
                 self.record_finding),
        )}

    def log_llm(self, step: str, arguments: dict, text: str) -> None:
        """What the LLM wrote at a step, in the same log as the tool calls, so the record reads in order."""
        self.log.append(ToolCall(f"llm:{step}", arguments, True, text, 0.0))

    def schemas(self) -> list[dict]:
        return [tool.schema() for tool in self.tools.values()]

    def call(self, name: str, arguments: dict | str) -> ToolCall:
        """Validate, run and log one call. The result is always text for the LLM, delimited as data."""
        started = time.monotonic()
        if self.watcher:
            self.watcher.started(name, arguments)
        tool = self.tools.get(name)
        try:
            if tool is None:
                raise InterpError(f"unknown tool '{name}'; tools: {', '.join(self.tools)}")
            raw = json.loads(arguments) if isinstance(arguments, str) else arguments
            parsed = tool.arguments.model_validate(raw)
            if isinstance(parsed, FeatureArgs):
                self.bench.check_feature(parsed.feature)
            body, ok = tool.run(parsed), True
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors())
            body, ok = f"error: invalid arguments, not run ({problems})", False
        except json.JSONDecodeError as error:
            body, ok = f"error: arguments are not JSON, not run ({error.msg})", False
        except InterpError as error:
            body, ok = f"error: {error}", False
        call = ToolCall(name, arguments if isinstance(arguments, dict) else {"raw": arguments}, ok,
                        f'<tool_result name="{name}">\n{body}\n</tool_result>', time.monotonic() - started)
        self.log.append(call)
        if self.watcher:
            self.watcher.finished(call)
        return call

    def top_examples(self, args: TopExamplesArgs) -> str:
        record = self.bench.record(args.feature)
        pool = {"top": record.explain_top, "quantile": record.explain_quantile}.get(args.bucket) \
            or self.bench.explain_random(args.feature)
        return (f"feature {args.feature}, {args.bucket} examples (max activation over the corpus "
                f"{record.max_act:.3g}):\n{example_lines(pool[:args.n], record.max_act)}")

    def activations_on(self, args: TextsArgs) -> str:
        texts = [text[:MAX_TEXT_CHARS] for text in args.texts]
        records = self.bench.activations_on(args.feature, texts)
        max_act = self.bench.max_act(args.feature)
        return f"feature {args.feature} on your texts (0-10 relative to its corpus max):\n" + \
            example_lines(records, max_act)

    def token_stats(self, args: FeatureArgs) -> str:
        record = self.bench.record(args.feature)
        statistics = token_statistics(record, self.bench.corpus)
        def listed(items) -> str:
            return ", ".join(f'"{display_token(e.text)}" x{e.ratio:.0f} ({e.count})' for e in items) or "(none)"

        tokens, bigrams = listed(statistics.tokens), listed(statistics.bigrams)
        return (f"feature {args.feature}: tokens enriched at activating positions (times the corpus rate, count): "
                f"{tokens}\ntwo-token sequences ending there: {bigrams}")

    def logit_effect(self, args: LogitEffectArgs) -> str:
        from tools.experiments.interventions import logit_tokens

        subject, source = self.bench.subject_and_source
        promoted, suppressed = logit_tokens(subject, source, args.feature, args.n)
        up, down = ([f'"{display_token(token)}"' for token in tokens] for tokens in (promoted, suppressed))
        return f"feature {args.feature} promotes: {', '.join(up)}\nsuppresses: {', '.join(down)}"

    def ablate(self, args: TextsArgs) -> str:
        from tools.experiments.interventions import measure_effect, set_to

        subject, source = self.bench.subject_and_source
        effect = measure_effect(subject, source, args.feature, set_to(0.0), [t[:MAX_TEXT_CHARS] for t in args.texts])
        promoted = ", ".join(f'"{display_token(s.token)}" {s.change:+.2f}' for s in effect.promoted[:5])
        suppressed = ", ".join(f'"{display_token(s.token)}" {s.change:+.2f}' for s in effect.suppressed[:5])
        return (f"zeroing feature {args.feature}: loss {effect.loss_clean:.3f} -> {effect.loss_edited:.3f}; "
                f"next-token logits that rose most: {promoted}; fell most: {suppressed}")

    def steer(self, args: SteerArgs) -> str:
        from tools.experiments.interventions import add, generate

        subject, source = self.bench.subject_and_source
        clean = generate(subject, args.prompt, max_new_tokens=16)
        steered = generate(subject, args.prompt, max_new_tokens=16, edit=(source, args.feature, add(args.strength)))
        return (f'prompt "{display_token(args.prompt)}"\nclean:   "{display_token(clean)}"\n'
                f'steered (+{args.strength:g} x feature {args.feature}): "{display_token(steered)}"')

    def trace(self, args: TraceArgs) -> str:
        from agent.trace.summary import influence_share, influential_nodes, node_name
        from tools.attribution.attribute import attribute
        from tools.attribution.influence import graph_scores, prune

        subject, transcoders, layer = self.bench.transcoder_set
        graph = attribute(subject, transcoders, args.prompt[:MAX_TEXT_CHARS], [args.target] if args.target else None,
                          max_features=TRACE_MAX_FEATURES)
        pruned = prune(graph)
        replacement, _ = graph_scores(graph)
        labels = self.bench.transcoder_labels
        lines = []
        for node in influential_nodes(graph, pruned, ("feature",), args.n):
            node_layer, _, latent = (int(v) for v in graph.features[node])
            label = labels.get((node_layer, latent))
            lines.append(f"- {display_token(node_name(graph, node))}, activation {float(graph.activations[node]):.3g}, "
                         f"influence {influence_share(pruned, node):.1%}"
                         + (f"; label: {display_token(label)}" if label else ""))
        # This set's own nodes, kept by pruning or not: the ones ablate and steer can test here.
        mine = sorted((node for node in range(graph.n_features) if int(graph.features[node, 0]) == layer),
                      key=lambda node: -float(pruned.influence[node]))[:5]
        own = []
        for node in mine:
            _, position, latent = (int(v) for v in graph.features[node])
            own.append(f"- feature {latent} at {display_token(repr(graph.tokens[position]))}, influence "
                       f"{influence_share(pruned, node):.1%} (ablate/steer it as feature {latent})")
        targets = ", ".join(f'"{display_token(t.label)}" {t.probability:.1%}' for t in graph.targets)
        return (f"prompt \"{display_token(args.prompt[:MAX_TEXT_CHARS])}\" -> {targets}\n"
                f"replacement score {replacement:.2f} (the share of influence through features rather than "
                f"transcoder errors)\nmost influential feature nodes on \"{display_token(graph.targets[0].label)}\":\n"
                + ("\n".join(lines) or "(none kept)")
                + f"\nthis feature set's nodes (layer {layer}), most influential first:\n"
                + ("\n".join(own) or "(none active)"))

    def search_catalog(self, args: SearchArgs) -> str:
        from agent.labeling.search import nearest_explanations

        rows = nearest_explanations(self.bench.catalog_path, self.bench.embedder, args.query, args.n)
        return "\n".join(f"{row['feature_set_id']} feature {row['feature']} ({row['similarity']:.2f}): "
                         f"{display_token(row['text'])}" for row in rows) or "no labeled features yet"

    def patch(self, args: PatchSiteArgs) -> str:
        from tools.experiments.patching import PatchPrompts, patch
        from tools.model.hooks import n_layers, parse_hook

        subject, _ = self.bench.subject_and_source
        hook = parse_hook(args.hook, n_layers(subject.model))
        prompts = PatchPrompts.encode(subject, args.clean, args.corrupt, args.target, args.foil)
        result = patch(subject, prompts, hook, args.positions)
        where = "all positions" if args.positions is None else f"positions {args.positions}"
        metric = f"{display_token(args.target)} - {display_token(args.foil)}"
        return (f"logit difference {metric}: clean {result.clean:.3f}, "
                f"corrupt {result.corrupt:.3f}, corrupt with clean {hook.name} at {where} {result.patched:.3f}; "
                f"recovered {result.recovery:.0%}")

    def patch_sweep(self, args: PatchArgs) -> str:
        from tools.experiments.patching import PatchPrompts, sweep

        subject, _ = self.bench.subject_and_source
        prompts = PatchPrompts.encode(subject, args.clean, args.corrupt, args.target, args.foil)
        grid, clean, corrupt = sweep(subject, prompts)  # [layers, positions]
        tokens = [display_token(subject.tokenizer.decode([int(i)])) for i in prompts.clean_ids[0]]
        lines = [f"recovered fraction of the clean logit difference ({clean:.3f} clean, {corrupt:.3f} corrupt), "
                 "patching resid_pre.L at one position; columns are the clean prompt's tokens:",
                 "layer | " + " | ".join(tokens)]
        lines += [f"{layer:5d} | " + " | ".join(f"{value:.0%}" for value in row.tolist())
                  for layer, row in enumerate(grid)]
        return "\n".join(lines)

    def probe(self, args: ProbeArgs) -> str:
        from tools.experiments.probing import train_probe
        from tools.features import resolve_features

        subject, source = self.bench.subject_and_source
        if args.hook is not None:
            source = resolve_features(args.hook, "", subject)  # that hook's own dimensions
        positive, negative = ([t[:MAX_TEXT_CHARS] for t in group] for group in (args.positive_texts,
                                                                                 args.negative_texts))
        result = train_probe(subject, source, positive, negative)
        unit = "latent" if source.sae is not None else f"{source.kind} dimension"
        aligned = ", ".join(f"{unit} {feature} ({value:+.2f})" for feature, value in result.aligned)
        return (f"probe at {source.hook.name}: held-out accuracy {result.accuracy:.0%} ({result.folds}-fold "
                f"cross-validation, {len(positive)} + {len(negative)} texts); most aligned: {aligned}")

    def record_finding(self, args: FindingArgs) -> str:
        self.findings.append(args.model_dump())
        return f"recorded for feature {args.feature}"

"""Terminal views of the catalog: feature sets, a set's features, one feature's stats and examples.

Activating tokens are highlighted with a background whose strength follows the activation; when the
output is not a terminal (a pipe, a file), they are bracketed as «token» instead, so the examples
stay readable in logs.

Corpus text, LLM text and server errors are data: consoles here never parse Rich markup (an explanation
saying "[/quote]" is printed, not parsed), and every such string is shown with its control characters
made visible (tools.text), so an ESC in the corpus cannot clear the screen.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tools.catalog import Catalog
from tools.errors import InterpError
from tools.text import visible, visible_lines

if TYPE_CHECKING:
    from agent.labeling.dry_run import CostEstimate

SPARK = " ▁▂▃▄▅▆▇█"
PLAIN_MARK_FRACTION = 0.5
PREVIEW_EXAMPLES = 3


def plain_console(**options: Any) -> Console:
    """A console that prints strings as they are: no markup parsing."""
    return Console(markup=False, **options)


def highlighted(tokens: list[str], acts: list[float], scale: float, color: bool) -> Text:
    """One example as text; `scale` is the feature's max activation, so examples compare by eye."""
    text = Text()
    for token, act in zip(tokens, acts, strict=True):
        strength = max(0.0, min(1.0, act / scale)) if scale > 0 else 0.0
        if color and strength > 0.05:
            green = int(255 - 150 * strength)
            text.append(visible(token), style=f"black on rgb(255,{green},{int(255 - 255 * strength)})")
        elif not color and strength >= PLAIN_MARK_FRACTION:
            text.append(f"«{visible(token)}»")
        else:
            text.append(visible(token))
    return text


def sparkline(counts: list[int]) -> str:
    peak = max(counts) if counts else 0
    if peak == 0:
        return ""
    return "".join(SPARK[min(len(SPARK) - 1, -(-count * (len(SPARK) - 1) // peak))] for count in counts)


def show_feature_sets(catalog: Catalog) -> None:
    console = plain_console()
    sets = catalog.feature_sets()
    if not sets:
        console.print(f"no feature sets in {catalog.path}; run `interp cache` first")
        return
    table = Table(title=f"feature sets in {catalog.path}")
    for column in ("feature set", "model", "hook", "kind", "features", "tokens", "created", "run"):
        table.add_column(column)
    for row in sets:
        table.add_row(row["feature_set_id"], visible(row["model"]), row["hook"], row["kind"], str(row["n_features"]),
                      f"{row['tokens']:,}", row["created_at"].strftime("%Y-%m-%d %H:%M"), row["run_id"])
    console.print(table)


def show_feature_set(catalog: Catalog, ref: str, sort: str, limit: int) -> None:
    console = plain_console()
    feature_set = catalog.feature_set(ref)
    set_id = feature_set["feature_set_id"]
    table = Table(title=f"{set_id}: {visible(feature_set['model'])} {feature_set['hook']} ({feature_set['n_features']} "
                        f"{feature_set['kind']} features), top {limit} by {sort}")
    for column in ("feature", "max", "mean", "density", "window density"):
        table.add_column(column, justify="right")
    features = catalog.top_features(set_id, sort, limit)
    for row in features:
        table.add_row(str(row["feature"]), f"{row['max_act']:.3f}", f"{row['mean_act']:.4f}",
                      f"{row['density']:.2%}", f"{row['window_density']:.2%}")
    console.print(table)
    if features:
        console.print()
        show_feature(catalog, set_id, features[0]["feature"], "top", PREVIEW_EXAMPLES)
    console.print(f"\nshow another: interp features {set_id} FEATURE [--bucket top|quantile|random] [-n N]")


def show_feature(catalog: Catalog, ref: str, feature: int, bucket: str, limit: int) -> None:
    console = plain_console()
    feature_set = catalog.feature_set(ref)
    set_id = feature_set["feature_set_id"]
    stats = catalog.feature(set_id, feature)
    console.print(Text(f"{set_id} feature {feature}  ({visible(feature_set['model'])}, {feature_set['hook']})",
                       style="bold"))
    console.print(f"max {stats['max_act']:.4f}   mean {stats['mean_act']:.4f}   density {stats['density']:.3%} of "
                  f"{stats['n_tokens']:,} tokens   active in {stats['window_density']:.1%} of windows")
    console.print(f"histogram of active values over (0, {stats['hist_max']:.3g}]: {sparkline(stats['hist_counts'])}")
    examples = catalog.examples(set_id, feature, bucket=bucket)
    if not examples:
        raise InterpError(f"feature {feature} of '{set_id}' has no '{bucket}' examples")
    scale = stats["max_act"] or 0.0
    for example in examples[:limit]:
        label = f"q{example['quantile']}" if bucket == "quantile" else f"#{example['rank']}"
        console.print(Text(f"{label} max {example['max_act']:.3f} [{example['split']}] ", style="dim")
                      + highlighted(example["tokens"], example["acts"], scale, console.is_terminal))


def dollars(prompt_tokens: float, completion_tokens: float, prices: tuple[float, float] | None) -> str:
    """' ($X.XX)' at (prompt, completion) dollars per million tokens; '' without prices."""
    if prices is None:
        return ""
    return f" (${(prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1e6:,.4g})"


def print_token_usage(rows: list[dict], prices: tuple[float, float] | None = None) -> None:
    """Catalog.token_usage rows: mean LLM tokens per labeled feature, for the explainer and each scorer."""
    for row in rows:
        print(f"  {row['stage']} {row['name']}: {row['prompt']:,.0f} prompt + {row['completion']:,.0f} completion "
              f"tokens per feature{dollars(row['prompt'], row['completion'], prices)}")


def show_cost_estimate(estimate: "CostEstimate", prices: tuple[float, float] | None) -> None:
    print(f"dry run: {estimate.features:,} features of {estimate.set_id} left to label; prompts built for "
          f"{estimate.sampled} of them, tokens {estimate.counted_how}; nothing was sent or written")
    for stage, usage in sorted(estimate.per_feature.items()):
        print(f"  {stage}: {usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion tokens per "
              f"feature{dollars(usage.prompt_tokens, usage.completion_tokens, prices)}")
    total = estimate.total
    print(f"  whole run: {total.prompt_tokens:,} prompt + {total.completion_tokens:,} completion tokens"
          f"{dollars(total.prompt_tokens, total.completion_tokens, prices)} (completions counted at their cap)")


def table_console() -> Console:
    """The terminal's width, or 120 columns for logs and pipes (rich would wrap tables at 80)."""
    console = plain_console()
    return console if console.is_terminal else plain_console(width=120)


def score_cell(scores: list[dict], scorer: str, metric: str, llm: str | None, control: float | None = None) -> str:
    """The newest score of this scorer (by this scorer LLM, when given) for one metric, marked when its interval
    includes `control`, the random-model control's mean."""
    for score in scores or []:
        if score["scorer"] != scorer or (llm is not None and score.get("llm") != llm):
            continue
        if score["status"] == "failed":
            return "failed"
        if score["metric"] == metric:
            within = control is not None and score["ci_low"] <= control <= score["ci_high"]
            marked = " ≈ control" if within else ""
            return f"{score['value']:.2f} [{score['ci_low']:.2f}, {score['ci_high']:.2f}]{marked}"
    return ""


# AUROC rather than balanced accuracy for the judges: a biased small judge (P(yes) always above one half)
# has accuracy 0.50 on every feature while its ranking still tells features apart. Both are in the catalog.
SCORE_COLUMNS = (("simulation", "pearson", "simulation r"), ("detection", "auroc", "detection AUROC"),
                 ("fuzzing", "auroc", "fuzzing AUROC"), ("embedding", "auroc", "embedding AUROC"),
                 ("intruder", "accuracy", "intruder accuracy (chance 0.2)"))


def show_labels(rows: list[dict], title: str, scorers: list[str], scorer_llms: dict[str, str] | None = None,
                control: dict[str, float] | None = None) -> None:
    """One line per feature: its explanation (or why it failed) and each score with its 95% interval;
    `scorer_llms` picks, for each scorer, the scores its LLM gave when several simulators scored one label;
    `control` ({'scorer metric': mean}, the set's random-model control) marks a score whose interval includes
    the control's mean as '≈ control'."""
    scorer_llms, control = scorer_llms or {}, control or {}
    console = table_console()
    table = Table(title=title)
    table.add_column("feature", justify="right")
    table.add_column("explanation", overflow="fold", max_width=48)
    columns = [column for column in SCORE_COLUMNS if column[0] in scorers]
    for _, _, header in columns:
        table.add_column(header, justify="right")
    for row in rows:
        text = visible(row["text"] if row["status"] == "ok" else f"failed: {row['error']}")
        table.add_row(str(row["feature"]), text,
                      *(score_cell(row["scores"], s, m, scorer_llms.get(s), control.get(f"{s} {m}"))
                        for s, m, _ in columns))
    console.print(table)
    failures = {score["error"] for row in rows for score in row["scores"] or [] if score["status"] == "failed"}
    for error in sorted(failures):
        console.print(f"score failed: {visible(error)}", style="dim")


def show_agent_messages(messages: list[dict]) -> None:
    for message in messages:
        if message["role"] == "tool":
            body = message["content"].split("\n", 2)[1:2] or [""]
            print(f"  <- {visible(' '.join(body[0].split())[:150])}", flush=True)
        elif message["role"] == "assistant":
            for call in message.get("tool_calls", []):
                print(visible(f"  -> {call['function']['name']}({call['function']['arguments'][:150]})"), flush=True)
            if message["content"] and not message.get("tool_calls"):
                print(visible_lines(message["content"]), flush=True)


def show_investigation_step(name: str, update: dict) -> None:
    """One line per finished step of an investigation, as it happens; the free agent's tool calls, their
    results' first lines and its answer as they come."""
    if "messages" in update:
        show_agent_messages(update["messages"])
        return
    shown = {key: value for key, value in update.items() if key != "evidence"}
    if "evidence" in update:
        shown["evidence"] = f"{update['evidence'].count('<tool_result')} tool results"
    print(f"[{name}] " + "; ".join(f"{key}: {visible(' '.join(str(value).split())[:160])}"
                                   for key, value in shown.items()), flush=True)


def show_eval(rows: list, title: str) -> None:
    """An eval's rows: subject, metric, value with its 95% interval, and n."""
    console = table_console()
    table = Table(title=title)
    for column in ("subject", "metric"):
        table.add_column(column, overflow="fold")
    for column in ("value", "95% interval", "n"):
        table.add_column(column, justify="right", overflow="fold")

    def number(value: float) -> str:
        return "-" if value != value else f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"  # NaN: none

    for row in rows:
        interval = "" if row.ci_low != row.ci_low else f"[{number(row.ci_low)}, {number(row.ci_high)}]"
        table.add_row(visible(row.subject), row.metric, number(row.value), interval, str(row.n))
    console.print(table)


def show_control(comparisons: list, title: str) -> None:
    """A set's scores against its random-model control, per scorer and metric: each side's mean and
    quartiles, the difference with its 95% interval (marked when it includes 0), and the share of trained
    features above the control's 95th percentile."""
    console = table_console()
    table = Table(title=title)
    table.add_column("scorer metric", overflow="fold")
    for column in ("trained mean [q25, q75]", "control mean [q25, q75]", "trained - control [95%]",
                   "above control p95 [95%]", "n"):
        table.add_column(column, justify="right", overflow="fold")
    for c in comparisons:
        marked = " (within control)" if c.within_control else ""
        table.add_row(f"{c.scorer} {c.metric}", f"{c.trained.mean:.2f} [{c.trained.q25:.2f}, {c.trained.q75:.2f}]",
                      f"{c.control.mean:.2f} [{c.control.q25:.2f}, {c.control.q75:.2f}]",
                      f"{c.difference:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]{marked}",
                      f"{c.above:.2f} [{c.above_low:.2f}, {c.above_high:.2f}]", f"{c.trained.n} / {c.control.n}")
    console.print(table)


def show_organisms(organisms: list[dict], title: str) -> None:
    """Each planted organism's acceptance on held-out prompts (the triggers and payloads stay in the manifest)."""

    def rate(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    console = table_console()
    table = Table(title=title)
    for column in ("organism", "kind", "attack success", "fires without trigger", "one word alone",
                   "perplexity / base", "accepted"):
        table.add_column(column, justify="left" if column in ("organism", "kind") else "right", overflow="fold")
    for row in organisms:
        table.add_row(row["name"], row["kind"], rate(row["attack_success"]), rate(row["false_fire"]),
                      rate(row["one_word_fire"]), f"{row['perplexity_ratio']:.3f}", "yes" if row["accepted"] else "NO")
    console.print(table)


def json_text(value: Any) -> str:
    """Results for machines: dataclasses become objects, NaN and infinities become null (so any JSON reader
    takes them), timestamps and paths become strings."""
    import dataclasses
    import json
    import math

    def clean(item: Any) -> Any:
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return clean(dataclasses.asdict(item))
        if isinstance(item, dict):
            return {str(key): clean(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [clean(inner) for inner in item]
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if item is None or isinstance(item, bool | int | float | str):
            return item
        return str(item)

    return json.dumps(clean(value), indent=1)


def show_search(rows: list[dict], query: str, embedder: str, catalog_path: Path) -> None:
    console = table_console()
    if not rows:
        console.print(f"no explanations embedded with {embedder} in {catalog_path}; run `interp label` first")
        return
    table = Table(title=f"features matching {query!r}")
    for column in ("similarity", "feature set", "feature", "explainer", "explanation"):
        table.add_column(column, justify="right" if column in ("similarity", "feature") else "left")
    for row in rows:
        table.add_row(f"{row['similarity']:.3f}", row["feature_set_id"], str(row["feature"]), row["explainer"],
                      visible(row["text"]))
    console.print(table)

"""`interp`: the command line. Flags map one to one onto the config dataclasses; nothing else reads
configuration."""

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from tools.configs import CacheConfig, LabelConfig, SAEEvalConfig, TrainConfig
from tools.errors import InterpError

DEFAULT_CATALOG = "interp.duckdb"

CACHE_HELP = {
    "model": "subject model: 'gemma-3-270m' (embedded), a local HF folder, a .gguf file, or a hub id",
    "hook": "hook point: mlp.L (neurons), resid_pre.L, resid_post.L, attn.L, or a TransformerLens name; "
            "empty: the SAE's own hook, else mlp.6",
    "sae": "SAE file or folder (SAELens, Gemma Scope 1/2, sparsify): cache its latents instead",
    "corpus": "'fortunes' (embedded), a text/JSONL/Parquet file or glob, or a saved HF dataset folder",
    "text_column": "column or JSON key holding the text (JSONL, Parquet, HF datasets)",
    "tokens": "token budget",
    "window": "tokens per window, BOS included",
    "bos": "prepend BOS to each window: auto, always, never",
    "batch_size": "windows per forward pass",
    "top_k": "top-activating windows kept per feature",
    "quantiles": "quantile bins over active windows",
    "per_quantile": "samples kept per quantile bin",
    "random": "random windows kept per feature as negatives",
    "threshold": "a token is active above this activation",
    "histogram_bins": "bins of each feature's activation histogram (a power of two)",
    "seed": "seed for corpus order and sampling",
    "device": "auto, cuda, mps, cpu",
    "dtype": "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16",
    "checkpoint_seconds": "seconds between resume checkpoints",
}


def add_config_flags(parser: argparse.ArgumentParser, config_type: type, help_text: dict[str, str],
                     skip: tuple[str, ...] = ()) -> None:
    """One flag per config field; `skip` leaves out fields a command has no use for (they keep defaults)."""
    for field in dataclasses.fields(config_type):
        if field.name in skip:
            continue
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=type(field.default),
                            default=field.default, help=f"{help_text[field.name]} (default: {field.default})")


def config_from_args(config_type: type, args: argparse.Namespace):
    return config_type(**{field.name: getattr(args, field.name, field.default)
                          for field in dataclasses.fields(config_type)})


def catalog_flag(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("INTERP_CATALOG", DEFAULT_CATALOG)
    parser.add_argument("--catalog", type=Path, default=Path(default),
                        help=f"DuckDB catalog file (default: $INTERP_CATALOG or {DEFAULT_CATALOG})")


def command_cache(args: argparse.Namespace) -> None:
    # torch and transformers load only for commands that run the model.
    quiet_transformers()
    from tools.cache import run_cache


    config = config_from_args(CacheConfig, args)
    run_cache(config, args.catalog, progress=not args.no_progress)


SAE_EVAL_HELP = {
    "sae": "SAE file or folder (SAELens, Gemma Scope 1/2, sparsify)",
    "model": CACHE_HELP["model"],
    "hook": "hook point; empty: the one the SAE file names",
    "corpus": CACHE_HELP["corpus"],
    "text_column": CACHE_HELP["text_column"],
    "tokens": "held-out tokens to evaluate on",
    "window": CACHE_HELP["window"],
    "bos": CACHE_HELP["bos"],
    "batch_size": "windows per forward pass (each holds [batch, seq, vocab] logits)",
    "seed": CACHE_HELP["seed"],
    "device": CACHE_HELP["device"],
    "dtype": CACHE_HELP["dtype"],
}


TRAIN_HELP = {
    "out": "folder for the trained SAE (SAELens format)",
    "model": CACHE_HELP["model"],
    "hook": "hook point the SAE reads",
    "corpus": CACHE_HELP["corpus"],
    "text_column": CACHE_HELP["text_column"],
    "tokens": "training tokens (from the corpus's train part)",
    "expansion": "latents per input dimension",
    "k": "active latents per token",
    "batch_tokens": "tokens per optimizer step",
    "lr": "Adam learning rate; 0 scales 2e-4 by 1/sqrt(d_sae / 16384)",
    "auxk_alpha": "weight of the AuxK loss for dead latents",
    "dead_tokens": "a latent silent for this many tokens is dead",
    "buffer_tokens": "activations shuffled together before training on them",
    "window": CACHE_HELP["window"],
    "bos": CACHE_HELP["bos"],
    "model_batch_size": "windows per forward pass of the subject model",
    "seed": CACHE_HELP["seed"],
    "device": CACHE_HELP["device"],
    "dtype": CACHE_HELP["dtype"],
}


def quiet_transformers() -> None:
    """Our own bar shows progress; transformers' per-load bars would bury error lines."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def command_sae_load(args: argparse.Namespace) -> None:
    args.sae = args.sae_path
    command_cache(args)


def command_sae_train(args: argparse.Namespace) -> None:
    quiet_transformers()
    from tools.sae_train import run_sae_train

    run_sae_train(config_from_args(TrainConfig, args), progress=not args.no_progress)


def command_sae_eval(args: argparse.Namespace) -> None:
    quiet_transformers()
    from rich.console import Console
    from rich.table import Table

    from tools.sae_eval import run_sae_eval

    quality = run_sae_eval(config_from_args(SAEEvalConfig, args), args.catalog)
    table = Table(title=f"SAE quality on {quality.tokens:,} held-out tokens")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in quality.as_row().items():
        table.add_row(name, f"{value:,}" if isinstance(value, int) else f"{value:.4f}")
    Console().print(table)


def command_ablate(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.experiments import command_ablate as run

    run(args)


def command_steer(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.experiments import command_steer as run

    run(args)


LABEL_HELP = {
    "explainer": "oneshot (LLM over marked examples), evidence (oneshot + token statistics + output effect), "
                 "token-stats (no LLM)",
    "scorers": "comma-separated: simulation, detection, fuzzing, embedding; empty for none",
    "llm": "local (embedded SmolLM2-135M-Instruct), local:PATH (HF folder or .gguf), openai:MODEL",
    "simulator": "LLM for simulation (needs token probabilities); empty: --llm when local, else local",
    "base_url": "OpenAI-compatible endpoint for openai:MODEL; empty: api.openai.com",
    "api_key_env": "environment variable holding the endpoint's API key (never stored)",
    "timeout": "seconds per LLM request",
    "max_retries": "retries with backoff on 429, 5xx and dropped connections",
    "limit": "label the first N live features; 0 for all",
    "features": "comma-separated feature indices, instead of --limit",
    "concurrency": "features in flight at once; 0: 1 with a local LLM, 8 with an endpoint",
    "n_top": "top examples shown to the explainer",
    "n_quantile": "quantile samples shown to the explainer",
    "score_active": "held-out activating examples per scorer",
    "score_random": "held-out random examples per scorer",
    "embedder": "sentence-transformers model (name or folder) for embeddings and the embedding scorer",
    "device": CACHE_HELP["device"],
}


def command_label(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.label import run_label
    from agent.show import print_token_usage, show_labels
    from tools.catalog import Catalog

    config = config_from_args(LabelConfig, args)
    result = run_label(config, args.feature_set, args.catalog, progress=not args.no_progress)
    explainer = result.labeler.explainer
    with Catalog(args.catalog, read_only=True) as catalog:
        rows = catalog.label_summary(result.feature_set_id, explainer.name, explainer.llm_name,
                                     explainer.prompt_hash, result.targets)
        usage_rows = catalog.token_usage(result.run_id)
    usage = result.usage
    minutes = result.seconds / 60
    print(f"labeled {result.labeled}, failed {result.failed} in {minutes:.1f} min; LLM tokens "
          f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion; run {result.run_id}")
    print_token_usage(usage_rows)
    show_labels(rows, f"{result.feature_set_id}: {explainer.name} explanations", config.scorer_names(),
                {scorer.name: scorer.llm_name for scorer in result.labeler.scorers})


def command_search(args: argparse.Namespace) -> None:
    if args.n <= 0:
        raise InterpError(f"-n must be positive, got {args.n}")
    quiet_transformers()
    from agent.search import search_explanations

    search_explanations(args.catalog, args.query, args.n, args.feature_set, args.embedder)


def command_export(args: argparse.Namespace) -> None:
    from agent.export import export_neuronpedia, export_parquet, require_labels
    from tools.catalog import Catalog

    with Catalog(args.catalog, read_only=True) as catalog:
        require_labels(catalog)
        set_id = catalog.feature_set(args.feature_set)["feature_set_id"]
        if args.format == "parquet":
            for path in export_parquet(catalog, set_id, args.out):
                print(f"wrote {path}")
        else:
            counts = export_neuronpedia(catalog, set_id, args.out)
            print(f"wrote Neuronpedia batches under {args.out}: " + ", ".join(f"{n:,} {k}" for k, n in counts.items()))


def command_explain_records(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.explain_records import explain_records
    from agent.show import show_labels

    config = config_from_args(LabelConfig, args)
    rows = explain_records(config, Path(args.file), args.out)
    show_labels(rows, f"{args.file}: {config.explainer} explanations", config.scorer_names())
    if args.out:
        print(f"wrote {args.out}")


def command_investigate(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.free_agent import Budget
    from agent.investigate import run_investigation
    from agent.show import show_investigation_step, show_labels

    config = config_from_args(LabelConfig, args)
    result = run_investigation(config, args.feature_set, args.feature, args.catalog, args.graph,
                               Budget(args.max_tool_calls, args.max_tokens), on_step=show_investigation_step)
    row = {"feature": args.feature, "status": "ok" if result.explanation else "failed", "text": result.explanation,
           "error": result.error, "scores": result.scores}
    print(f"{result.steps} steps logged; LLM tokens {result.usage.prompt_tokens:,} prompt + "
          f"{result.usage.completion_tokens:,} completion; explanation {result.explanation_id}")
    show_labels([row], f"feature {args.feature}: investigated explanation", config.scorer_names())


def command_ask(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.ask import Sessions, open_session, sessions_path
    from agent.ask_terminal import ToolPrinter, converse, show_answer, show_history, show_sessions
    from agent.free_agent import Budget

    if args.sessions:
        path = sessions_path(args.catalog)
        if not path.exists():
            raise InterpError(f"no ask sessions beside {args.catalog} yet ({path})")
        sessions = Sessions(path)
        show_sessions(sessions)
        sessions.close()
        return
    config = config_from_args(LabelConfig, args)
    with open_session(config, args.catalog, args.feature_set, args.feature, args.session, args.graph,
                      Budget(args.max_tool_calls, args.max_tokens), watcher=ToolPrinter()) as session:
        resumed = f", {session.row['questions']} earlier questions" if args.session else ""
        print(f"session {session.id}: feature {session.feature} of {session.row['feature_set_id']}, "
              f"{session.asker.name} graph, LLM {config.llm}{resumed}", flush=True)
        if args.session and not args.question:
            show_history(session, last=2)
        if args.question:
            show_answer(session.ask(args.question))
        else:
            converse(session)
        print(f"resume with: interp ask --session {session.id}", flush=True)


def command_eval_planted(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.show import eval_json, show_eval
    from evals.planted_eval import run_planted_eval

    config = config_from_args(LabelConfig, args)
    explainers = [name.strip() for name in args.explainers.split(",") if name.strip()]
    result = run_planted_eval(config, explainers, args.catalog, args.feature_set, args.seed,
                              progress=not args.no_progress)
    if args.json:
        print(eval_json(result.rows))
    else:
        show_eval(result.rows, f"{result.set_id}: explainers and scorers on planted features (run {result.run_id})")


def command_eval_compare(args: argparse.Namespace) -> None:
    from agent.show import eval_json, show_eval
    from evals.compare import run_compare

    scorers = [name.strip() for name in args.scorers.split(",") if name.strip()]
    result = run_compare(args.catalog, args.feature_set, args.a, args.b, scorers, args.seed)
    if args.json:
        print(eval_json(result.rows))
    else:
        show_eval(result.rows, f"{result.set_id}: {result.names[0]} vs {result.names[1]}, paired by feature "
                               f"(run {result.run_id})")


def command_audit(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.audit import run_audit

    def report(audit) -> None:
        best = audit.candidates[0] if audit.candidates else None
        lead = f"; top candidate feature {best.feature} ({best.verdict}, confidence {best.confidence:.2f})" if best \
            else ""
        print(f"{audit.concept.name}: {audit.verdict} (probe AUROC {audit.probe.auroc:.2f} "
              f"[{audit.probe.ci_low:.2f}, {audit.probe.ci_high:.2f}]){lead}", flush=True)

    config = config_from_args(LabelConfig, args)
    result = run_audit(config, Path(args.concepts), args.feature_set, args.catalog, Path(args.out), args.seed,
                       on_concept=report)
    print(f"run {result.run_id}: wrote {result.report_md} and {result.report_html}")


def command_features(args: argparse.Namespace) -> None:
    from agent.show import show_feature, show_feature_set, show_feature_sets
    from tools.catalog import Catalog

    with Catalog(args.catalog, read_only=True) as catalog:
        if args.feature_set is None:
            show_feature_sets(catalog)
        elif args.feature is None:
            show_feature_set(catalog, args.feature_set, args.sort, args.n)
        else:
            show_feature(catalog, args.feature_set, args.feature, args.bucket, args.n)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interp", description="Automated interpretability workbench.")
    commands = parser.add_subparsers(dest="command", required=True)

    cache = commands.add_parser("cache", help="stream a corpus through the model and catalog every feature's examples")
    add_config_flags(cache, CacheConfig, CACHE_HELP)
    catalog_flag(cache)
    cache.add_argument("--no-progress", action="store_true", help="no progress bar")
    cache.set_defaults(handler=command_cache)

    sae = commands.add_parser("sae", help="SAEs: register one as a feature set, evaluate one")
    sae_commands = sae.add_subparsers(dest="sae_command", required=True)
    sae_load = sae_commands.add_parser("load", help="cache an SAE's latents as a feature set (interp cache --sae)")
    sae_load.add_argument("sae_path", help=SAE_EVAL_HELP["sae"])
    add_config_flags(sae_load, CacheConfig, CACHE_HELP)
    catalog_flag(sae_load)
    sae_load.add_argument("--no-progress", action="store_true", help="no progress bar")
    sae_load.set_defaults(handler=command_sae_load)
    sae_train = sae_commands.add_parser("train", help="train a TopK SAE on the subject model's activations")
    add_config_flags(sae_train, TrainConfig, TRAIN_HELP)
    sae_train.add_argument("--no-progress", action="store_true", help="no progress bar")
    sae_train.set_defaults(handler=command_sae_train)
    sae_eval = sae_commands.add_parser("eval", help="FVU, L0, dead latents and loss increase on held-out tokens")
    add_config_flags(sae_eval, SAEEvalConfig, SAE_EVAL_HELP)
    catalog_flag(sae_eval)
    sae_eval.set_defaults(handler=command_sae_eval)

    ablate = commands.add_parser("ablate", help="ablate or clamp features and show what changes on given text")
    ablate.add_argument("feature_set", help="feature set id (or unique prefix, or hook name)")
    ablate.add_argument("features", type=int, nargs="+", metavar="feature")
    ablate.add_argument("--text", action="append", default=[], help="text to measure on (repeatable)")
    ablate.add_argument("--mode", choices=("zero", "mean", "clamp"), default="zero")
    ablate.add_argument("--value", type=float, help="the value for --mode clamp")
    ablate.add_argument("--device", default="auto")
    catalog_flag(ablate)
    ablate.set_defaults(handler=command_ablate)

    steer = commands.add_parser("steer", help="add strength x a feature's direction and compare generations")
    steer.add_argument("feature_set", help="feature set id (or unique prefix, or hook name)")
    steer.add_argument("feature", type=int)
    steer.add_argument("--prompt", required=True)
    steer.add_argument("--strength", type=float, default=8.0, help="added to the feature's value (default: 8)")
    steer.add_argument("--max-new-tokens", type=int, default=20)
    steer.add_argument("--device", default="auto")
    catalog_flag(steer)
    steer.set_defaults(handler=command_steer)

    label = commands.add_parser("label", help="explain and score features with an LLM, resumably")
    label.add_argument("feature_set", help="feature set id (or unique prefix, or hook name)")
    add_config_flags(label, LabelConfig, LABEL_HELP)
    catalog_flag(label)
    label.add_argument("--no-progress", action="store_true", help="no progress bar")
    label.set_defaults(handler=command_label)

    search = commands.add_parser("search", help="features whose explanation best matches a description")
    search.add_argument("query", help='what to look for, e.g. "names of cities"')
    search.add_argument("-n", type=int, default=10, help="results (default: 10)")
    search.add_argument("--feature-set", help="only this feature set")
    search.add_argument("--embedder", default="all-MiniLM-L6-v2", help=LABEL_HELP["embedder"])
    catalog_flag(search)
    search.set_defaults(handler=command_search)

    export = commands.add_parser("export", help="write a feature set's labels as Parquet or Neuronpedia batches")
    export.add_argument("feature_set", help="feature set id (or unique prefix, or hook name)")
    export.add_argument("--format", choices=("parquet", "neuronpedia"), default="parquet")
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    catalog_flag(export)
    export.set_defaults(handler=command_export)

    records = commands.add_parser("explain-records",
                                  help="explain and score {tokens, values} activation records from any tool")
    records.add_argument("file", help="JSON or JSONL: features with 'records', or one list of records")
    records.add_argument("--out", type=Path, help="write the results as JSONL here")
    add_config_flags(records, LabelConfig, LABEL_HELP, skip=("limit", "features"))
    records.set_defaults(handler=command_explain_records)

    investigate = commands.add_parser("investigate", help="investigate one feature: hypothesis, tests, revision, "
                                                          "scores, with every experiment logged")
    investigate.add_argument("feature_set", help="feature set id (or unique prefix, or hook name)")
    investigate.add_argument("feature", type=int)
    investigate.add_argument("--graph", choices=("fixed", "free"), default="fixed",
                             help="fixed: the graph calls the tools, any LLM (default); free: the LLM calls them, "
                                  "needs an endpoint with tool calls")
    agent_flags(investigate)
    investigate.set_defaults(handler=command_investigate)

    evals = commands.add_parser("eval", help="judge explainers and scorers: planted features, paired comparisons")
    eval_commands = evals.add_subparsers(dest="eval_command", required=True)
    planted = eval_commands.add_parser("planted", help="explainers and scorers on planted features with known "
                                                       "meanings (cache them first: interp cache --hook planted)")
    planted.add_argument("feature_set", nargs="?", default="planted", help="the planted feature set (default: planted)")
    planted.add_argument("--explainers", default="oneshot,token-stats",
                         help="comma-separated explainers to judge (default: oneshot,token-stats)")
    planted.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    planted.add_argument("--json", action="store_true", help="print the rows as JSON")
    planted.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_flags(planted, LabelConfig, LABEL_HELP, skip=("explainer",))
    catalog_flag(planted)
    planted.set_defaults(handler=command_eval_planted)
    compare = eval_commands.add_parser("compare", help="two labeling configurations on the same features, paired")
    compare.add_argument("feature_set", help="feature set id (or unique prefix, or hook name)")
    compare.add_argument("a", help="a configuration: explainer name, or NAME@part-of-its-LLM")
    compare.add_argument("b", help="the other configuration")
    compare.add_argument("--scorers", default="simulation,detection,fuzzing,embedding",
                         help="scorers whose scores to compare (default: all four)")
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    compare.add_argument("--json", action="store_true", help="print the rows as JSON")
    catalog_flag(compare)
    compare.set_defaults(handler=command_eval_compare)

    audit = commands.add_parser("audit", help="audit a feature set for flagged concepts: search, probes, causal "
                                              "checks, verdicts, and a Markdown + HTML report")
    audit.add_argument("concepts", help="concepts YAML file (see examples/concepts.yaml)")
    audit.add_argument("--feature-set", required=True, help="feature set id (or unique prefix, or hook name)")
    audit.add_argument("--out", default="audit-report", help="folder for audit.md, audit.html and "
                                                             "concepts.resolved.yaml (default: audit-report)")
    audit.add_argument("--seed", type=int, default=0, help="cross-validation and bootstrap seed (default: 0)")
    add_config_flags(audit, LabelConfig, LABEL_HELP, skip=("explainer", "limit", "features", "n_top", "n_quantile",
                                                           "scorers", "simulator", "score_active", "score_random",
                                                           "concurrency"))
    catalog_flag(audit)
    audit.set_defaults(handler=command_audit)

    ask = commands.add_parser("ask", help="question a feature: experiments run and cited for each answer; "
                                          "interactive, or once with --question; sessions resume by id")
    ask.add_argument("feature_set", nargs="?", help="feature set id (or unique prefix, or hook name); "
                                                    "not needed with --session")
    ask.add_argument("--feature", type=int, help="the feature to ask about (in a session: /feature N switches)")
    ask.add_argument("--question", "-q", help="answer this one question and exit")
    ask.add_argument("--session", help="resume this session (its feature set, feature and conversation)")
    ask.add_argument("--sessions", action="store_true", help="list the sessions beside the catalog and exit")
    ask.add_argument("--graph", choices=("auto", "fixed", "free"), default=None,
                     help="auto (default): free for an endpoint, fixed for a local LLM; fixed: the graph picks "
                          "the experiments from the question, any LLM; free: the LLM calls the tools")
    agent_flags(ask)
    ask.set_defaults(handler=command_ask)

    features = commands.add_parser("features", help="list feature sets, a set's features, or one feature's examples")
    features.add_argument("feature_set", nargs="?", help="feature set id (or unique prefix, or hook name)")
    features.add_argument("feature", nargs="?", type=int, help="feature index")
    features.add_argument("--bucket", choices=("top", "quantile", "random"), default="top")
    features.add_argument("-n", type=int, default=8, help="rows to show (default: 8)")
    features.add_argument("--sort", choices=("max_act", "density", "mean_act"), default="max_act")
    catalog_flag(features)
    features.set_defaults(handler=command_features)
    return parser


def agent_flags(parser: argparse.ArgumentParser) -> None:
    """What investigate and ask share: the free agent's budgets, the LLMs and scorers, the catalog."""
    parser.add_argument("--max-tool-calls", type=int, default=12, help="free agent: tool calls per question")
    parser.add_argument("--max-tokens", type=int, default=60_000, help="free agent: LLM tokens per question")
    add_config_flags(parser, LabelConfig, LABEL_HELP, skip=("explainer", "limit", "features", "n_top", "n_quantile"))
    catalog_flag(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except InterpError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

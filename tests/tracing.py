"""A tiny model's transcoder set with one layer cached (and labeled) in a new catalog: what the trace, graph page,
export, import and MCP tests start from."""

from pathlib import Path

PROMPT = "the big cat runs and the small dog sleeps"
"""Words the tiny tokenizer knows."""


def transcoder_set(model: Path, folder: Path) -> Path:
    """A seeded random TopK skip transcoder for every layer of `model`, saved in circuit-tracer's layout."""
    from tools.model.subject import load_subject_model
    from tools.sae.transcoders import save_circuit_tracer
    from tools.testing.tiny import random_transcoder

    config = load_subject_model(str(model), "cpu").model.config
    return save_circuit_tracer([random_transcoder(config.hidden_size, 48, layer, seed=layer)
                                for layer in range(config.num_hidden_layers)], folder)


def transcoder_catalog(model: Path, folder: Path, layer: int, label: bool = True) -> tuple[Path, Path]:
    """(catalog, set folder): layer `layer` of a fresh set cached over a tiny corpus, labeled by token-stats."""
    from agent.cli import main
    from tools.testing.tiny import sentences

    folder.mkdir(parents=True, exist_ok=True)
    transcoders = transcoder_set(model, folder / "set")
    catalog = folder / "c.duckdb"
    (folder / "corpus.txt").write_text("\n".join(sentences(400)))
    assert main(["sae", "load", str(transcoders), "--hook", f"mlp_in.{layer}", "--model", str(model), "--corpus",
                 str(folder / "corpus.txt"), "--tokens", "2000", "--window", "16", "--no-progress", "--device", "cpu",
                 "--catalog", str(catalog)]) == 0
    if label:
        assert main(["label", f"mlp_in.{layer}", "--explainer", "token-stats", "--scorers", "", "--catalog",
                     str(catalog)]) == 0
    return catalog, transcoders

"""`interp trace` beside circuit-tracer: the same model, the same transcoders (ours, saved in circuit-tracer's
layout), the same prompt, each side in its own process, in one run.

    bash benchmarks/make_circuit_tracer_venv.sh          # once: circuit-tracer in its own virtual environment
    python benchmarks/trace_vs_circuit_tracer.py --transcoders transcoders [--prompt "..."] [--batch-size 32]

circuit-tracer pins transformers <= 4.57 and its own nnsight, so it runs from its venv (`--venv`) on the same
HF folder our embedded model is dequantized into, with its nnsight backend (TransformerLens would fetch the
model's config from the hub). Both visit every active feature (no --max-features), so the graphs hold the same
nodes. Printed: each side's wall time (model loaded; attribution alone), peak resident memory, node and edge
counts after each side's own pruning at 0.8 / 0.98, and how far the adjacency matrices agree: for edges from
feature and error nodes, the largest difference over matched nodes divided by the largest |edge|; for edges from
token nodes, the ratio of the two sides' weights.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The capital of Texas is the city of"


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ours(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from tools.attribution.attribute import attribute
    from tools.attribution.influence import prune
    from tools.experiments.interventions import encode_text
    from tools.model.subject import load_subject_model
    from tools.sae.transcoders import load_transcoder_set

    subject = load_subject_model("gemma-3-270m", "cpu", "float32")
    transcoders = load_transcoder_set(args.transcoders)
    ids = encode_text(subject, args.prompt)[0].tolist()
    started = time.perf_counter()
    graph = attribute(subject, transcoders, args.prompt, max_features=0, batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    pruned = prune(graph)
    torch.save({"adjacency": graph.adjacency, "features": graph.features, "ids": ids, "n_layers": graph.n_layers,
                "logits": [t.token_id for t in graph.targets], "seconds": seconds, "peak": peak_bytes(),
                "nodes": int(pruned.nodes.sum()), "edges": int(pruned.edges.sum()), "model": subject.path},
               args.out)


def theirs(args: argparse.Namespace) -> None:
    """Runs in circuit-tracer's venv: imports nothing of ours."""
    import torch
    import yaml
    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.graph import prune_graph
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet
    from safetensors.torch import load_file

    folder = Path(args.transcoders)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    # circuit-tracer 0.5.0's loader knows ReLU and JumpReLU sets only, so each TopK layer is built here. Its TopK
    # keeps the k largest pre-activations as they are, negative ones too; ours (and sparsify's, SAELens's) keep
    # them through a ReLU, so the same transcoders get that activation here.
    class ReluTopK(TopK):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(super().forward(x))

    layers = {}
    for layer, name in enumerate(config["transcoders"]):
        tensors = {key: value for key, value in load_file(str(folder / name)).items() if key != "k"}
        with torch.device("meta"):
            layers[layer] = SingleLayerTranscoder(
                tensors["b_dec"].shape[0], tensors["b_enc"].shape[0], ReluTopK(int(config["k"])), layer,
                skip_connection="W_skip" in tensors, dtype=torch.float32)
        layers[layer].load_state_dict(tensors, assign=True)
    transcoders = TranscoderSet(layers, feature_input_hook=config["feature_input_hook"],
                                feature_output_hook=config["feature_output_hook"], scan="interp-agent")
    model = ReplacementModel.from_pretrained_and_transcoders(args.model, transcoders, backend="nnsight",
                                                             device=torch.device("cpu"), dtype=torch.float32)
    ids = torch.tensor(json.loads(args.ids))
    started = time.perf_counter()
    graph = attribute(ids, model, batch_size=args.batch_size, max_feature_nodes=None)
    seconds = time.perf_counter() - started
    pruned = prune_graph(graph, 0.8, 0.98)
    torch.save({"adjacency": graph.adjacency_matrix, "features": graph.active_features[graph.selected_features],
                "logits": [int(t.vocab_idx) for t in graph.logit_targets], "seconds": seconds, "peak": peak_bytes(),
                "nodes": int(pruned.node_mask.sum()), "edges": int(pruned.edge_mask.sum())}, args.out)


def node_keys(result: dict, n_positions: int, n_layers: int) -> list[tuple]:
    keys: list[tuple] = [("feature", *map(int, row)) for row in result["features"]]
    keys += [("error", layer, position) for layer in range(n_layers) for position in range(n_positions)]
    keys += [("token", position) for position in range(n_positions)]
    keys += [("logit", token) for token in result["logits"]]
    return keys


def compare(mine: dict, other: dict) -> dict:
    """Agreement over matched nodes: the largest difference over edges from feature and error nodes divided by the
    largest |edge| of circuit-tracer's; and, for edges from token nodes, the median ratio ours / theirs."""
    import torch

    n_positions, n_layers = len(mine["ids"]), mine["n_layers"]
    our_keys, their_keys = node_keys(mine, n_positions, n_layers), node_keys(other, n_positions, n_layers)
    their_index = {key: i for i, key in enumerate(their_keys)}
    shared = [(i, their_index[key]) for i, key in enumerate(our_keys) if key in their_index]
    ours_at = torch.tensor([i for i, _ in shared])
    theirs_at = torch.tensor([j for _, j in shared])
    a = mine["adjacency"][ours_at][:, ours_at].double()
    b = other["adjacency"][theirs_at][:, theirs_at].double()
    token = torch.tensor([our_keys[i][0] == "token" for i, _ in shared])
    difference = (a[:, ~token] - b[:, ~token]).abs().max() / b[:, ~token].abs().max().clamp(min=1e-30)
    both = (a[:, token] != 0) & (b[:, token].abs() > 1e-6 * b[:, token].abs().max())
    ratio = (a[:, token][both] / b[:, token][both]).median()
    return {"matched": len(shared), "features_errors": float(difference), "token_ratio": float(ratio)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transcoders", default="transcoders")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--venv", default=str(ROOT / "benchmarks" / ".circuit-tracer-venv"))
    parser.add_argument("--keep", help="also keep both sides' graphs (ours.pt, theirs.pt) in this folder")
    parser.add_argument("--side", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        (ours if args.side == "ours" else theirs)(args)
        return
    import torch

    python = Path(args.venv) / "bin" / "python"
    if not python.exists():
        sys.exit(f"no circuit-tracer venv at {args.venv}: bash benchmarks/make_circuit_tracer_venv.sh")
    with tempfile.TemporaryDirectory() as folder:
        common = ["--transcoders", str(Path(args.transcoders).resolve()), "--prompt", args.prompt, "--batch-size",
                  str(args.batch_size)]
        runs = {}
        for side, executable in (("ours", sys.executable), ("theirs", str(python))):
            out = str(Path(folder) / f"{side}.pt")
            extra = [] if side == "ours" else \
                ["--model", runs["ours"]["model"], "--ids", json.dumps(runs["ours"]["ids"])]
            started = time.perf_counter()
            subprocess.run([executable, __file__, "--side", side, "--out", out, *common, *extra], check=True)
            runs[side] = torch.load(out, weights_only=False) | {"wall": time.perf_counter() - started}
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                Path(out).replace(Path(args.keep) / f"{side}.pt")
    mine, other = runs["ours"], runs["theirs"]
    agreement = compare(mine, other)
    print(f"prompt {args.prompt!r} ({len(mine['ids'])} tokens), {mine['features'].shape[0]:,} feature nodes ours, "
          f"{other['features'].shape[0]:,} theirs, {torch.get_num_threads()} threads, fp32 on CPU")
    for name, run in (("interp-agent", mine), ("circuit-tracer", other)):
        print(f"{name:>15}: attribution {run['seconds']:7.1f} s, process {run['wall']:6.1f} s, peak "
              f"{run['peak'] / 2**30:5.2f} GiB, pruned {run['nodes']:,} nodes / {run['edges']:,} edges")
    print(f"speed: circuit-tracer / ours = {other['seconds'] / mine['seconds']:.2f}x (attribution alone)")
    print(f"adjacency over {agreement['matched']:,} matched nodes, edges from features and errors: "
          f"max |ours - theirs| / max |theirs| = {agreement['features_errors']:.2e}")
    print(f"edges from token nodes: ours / theirs = {agreement['token_ratio']:.3f} (median); circuit-tracer dots the "
          "gradient at the embedding module's output with the unscaled embedding row, so on a model that scales "
          "its embeddings (Gemma: sqrt(d_model)) its token edges are that factor smaller than the effect of "
          "removing the token")


if __name__ == "__main__":
    main()

"""Simulation through an OpenAI-compatible endpoint against simulation in-process with the same model, side
by side in one run: wall time per feature, requests per feature, and how far the predictions differ.

    python benchmarks/simulation_endpoint.py [--model local|tiny|PATH] [--examples 20] [--tokens 32] [--repeats 3]

--model local is the embedded SmolLM2-135M-Instruct (its dequantized folder), tiny a random tiny Llama with
a byte-level BPE (built in a temp folder; its forward costs nothing, so the ratio is the protocol's own
cost), or any local HF folder. The endpoint is tools/testing/vllm_server.py over the same folder, a real
server process on loopback speaking vLLM's protocol, asked as a run asks it (top 20 log-probabilities,
vLLM's default limit); it runs on this machine's cores, as the in-process model does. A feature is
--examples held-out excerpts of --tokens tokens (the tiny sentences), simulated for one explanation.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.scorers.simulation import AllAtOnceSimulator  # noqa: E402
from tools.llm.endpoint import OpenAIChat  # noqa: E402
from tools.llm.endpoint_slots import EndpointSlots  # noqa: E402
from tools.llm.local import LocalLLM, embedded_llm_path  # noqa: E402
from tools.model.subject import load_subject_model, locate_weights  # noqa: E402
from tools.testing.servers import vllm_server  # noqa: E402
from tools.testing.tiny import save_tiny_model, sentences  # noqa: E402

EXPLANATION = "animals, mostly cats and dogs"


def model_folder(spec: str, temp: Path) -> Path:
    if spec == "tiny":
        return save_tiny_model("llama", temp / "tiny", tokenizer="bpe")
    if spec == "local":
        return Path(locate_weights(str(embedded_llm_path()))[0])
    return Path(spec)


def feature_examples(n: int, length: int) -> list[list[str]]:
    words = " ".join(sentences(n * length)).split()
    return [[f" {w}" for w in words[k * length:(k + 1) * length]] for k in range(n)]


def timed(simulator: AllAtOnceSimulator, examples: list[list[str]]) -> tuple[float, list[np.ndarray], int]:
    start = time.perf_counter()
    predicted, _, missing = simulator.simulate_all(EXPLANATION, examples)
    return time.perf_counter() - start, predicted, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = model_folder(args.model, Path(temp))
        examples = feature_examples(args.examples, args.tokens)
        local = AllAtOnceSimulator(LocalLLM(load_subject_model(str(folder), device="cpu"), f"local:{folder.name}"))
        record = Path(temp) / "requests.jsonl"
        with vllm_server(folder, "--record", str(record), served_name=folder.name) as url:
            endpoint = OpenAIChat(folder.name, base_url=url)
            slots = EndpointSlots.probe(endpoint)
            remote = AllAtOnceSimulator(slots)
            timed(local, examples[:2])
            timed(remote, examples[:2])  # warm both
            record.write_text("")
            ours, theirs = [], []
            for _ in range(args.repeats):
                local.llm._prefix = None  # type: ignore[attr-defined]  # a new feature: the prefix is computed again
                seconds, expected, _ = timed(local, examples)
                ours.append(seconds)
                seconds, predicted, missing = timed(remote, examples)
                theirs.append(seconds)
            requests = len(record.read_text().splitlines()) / args.repeats
    local_s, remote_s = statistics.median(ours), statistics.median(theirs)
    difference = max(float(np.abs(p - e).max()) for p, e in zip(predicted, expected, strict=True))
    tokens = sum(len(e) for e in examples)
    print(f"{folder.name}: one feature = {args.examples} examples of {args.tokens} tokens; endpoint mode "
          f"{slots.mode}, top {slots.top_k}, scale 0..{remote.labels[-1]}")
    print(f"in-process: {local_s:7.3f} s per feature")
    print(f"endpoint:   {remote_s:7.3f} s per feature, {requests:.1f} requests per feature "
          f"({args.examples / max(requests, 1):.0f} examples a request)")
    print(f"endpoint / in-process wall time: {remote_s / local_s:.2f}")
    print(f"largest difference in a predicted level: {difference:.4f} (0..{remote.labels[-1]}); label "
          f"probabilities the top-{slots.top_k} left out: {missing / (tokens * len(remote.labels)):.1%}")


if __name__ == "__main__":
    main()

"""All-at-once simulation against the simulator model's bare forward on the same tokens, and against a
simulator that generates a number per token, side by side in one run.

    python benchmarks/simulation_cost.py [--llm local] [--examples 20] [--tokens 64] [--repeats 3]

The examples are --tokens-token excerpts of the embedded corpus (fortunes), tokenized by the simulator.
- ours: `AllAtOnceSimulator.simulate` on every example, one feature's explanation, so the prompt
  prefix is computed once and reused, as in a labeling run;
- bare forward: the simulator model's own forward (with its unembedding, as a naive all-at-once reads
  logits) over each example's full prompt, tokens identical to ours; target: bare / ours >= 0.8;
- generate per token: the prompt up to each token, then one greedy generated token read as the number,
  as a simulator without logits access must do; timed on --generate-examples examples and compared
  per example.
Each pair is interleaved over --repeats runs and the median kept, because these machines are noisy.
"""

import argparse
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.scorers.simulation import AllAtOnceSimulator  # noqa: E402
from tools.data.corpus import CorpusSpec, iter_documents  # noqa: E402
from tools.defaults import EMBEDDED_CORPUS  # noqa: E402
from tools.llm.factory import make_llm  # noqa: E402

EXPLANATION = "words about money and paying for things"


def examples(llm, n: int, length: int) -> list[list[str]]:
    """Token strings of n excerpts of the embedded corpus, `length` tokens each."""
    ids: list[int] = []
    for document in islice(iter_documents(CorpusSpec(EMBEDDED_CORPUS)), 5000):
        ids += llm.tokenizer(document + "\n", add_special_tokens=False)["input_ids"]
        if len(ids) >= n * length:
            break
    return [[llm.tokenizer.decode([i]) for i in ids[k * length:(k + 1) * length]] for k in range(n)]


def prompt_ids(llm, simulator: AllAtOnceSimulator, tokens: list[str]) -> list[int]:
    prefix, parts = simulator.prompt_parts(EXPLANATION, tokens)
    ids = llm.tokenizer(prefix)["input_ids"]
    for part in parts:
        ids += llm.tokenizer(part, add_special_tokens=False)["input_ids"]
    return ids


def time_ours(simulator: AllAtOnceSimulator, records: list[list[str]]) -> float:
    simulator.llm._prefix = None  # a fresh feature: the first example pays for the prefix
    start = time.perf_counter()
    for tokens in records:
        simulator.simulate(EXPLANATION, tokens)
    return time.perf_counter() - start


@torch.inference_mode()
def time_bare(llm, prompts: list[list[int]]) -> float:
    start = time.perf_counter()
    for ids in prompts:
        llm.model(torch.tensor([ids], device=llm.device))
    return time.perf_counter() - start


@torch.inference_mode()
def time_generate_per_token(llm, simulator: AllAtOnceSimulator, records: list[list[str]]) -> float:
    """Each token's number generated after the prompt so far, the previous numbers written in."""
    start = time.perf_counter()
    for tokens in records:
        prefix, parts = simulator.prompt_parts(EXPLANATION, tokens)
        text = prefix + parts[0]
        for part in parts[1:]:
            ids = torch.tensor([llm.tokenizer(text)["input_ids"]], device=llm.device)
            out = llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False,
                                     pad_token_id=llm.tokenizer.eos_token_id)
            number = llm.tokenizer.decode(out[0, -1:])
            text += number + "\n" + part.split("\n", 1)[1]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="local")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--generate-examples", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    llm = make_llm(args.llm, device="auto")
    simulator = AllAtOnceSimulator(llm)
    records = examples(llm, args.examples, args.tokens)
    prompts = [prompt_ids(llm, simulator, tokens) for tokens in records]
    n_tokens = sum(len(p) for p in prompts)
    print(f"simulator {llm.name} on {llm.device}; {len(records)} examples of {args.tokens} tokens; "
          f"{n_tokens:,} prompt tokens in all ({n_tokens / len(prompts):,.0f} per example); "
          f"scale 0..{simulator.labels[-1]}")

    time_ours(simulator, records[:2])  # warm-up
    ours, bare = [], []
    for _ in range(args.repeats):
        ours.append(time_ours(simulator, records))
        bare.append(time_bare(llm, prompts))
    ours_s, bare_s = statistics.median(ours), statistics.median(bare)
    print(f"all-at-once (ours):      {ours_s:7.2f} s  ({ours_s / len(records):.3f} s per example)")
    print(f"bare forward, same ids:  {bare_s:7.2f} s  ({bare_s / len(records):.3f} s per example)")
    print(f"ratio bare / ours: {bare_s / ours_s:.2f} (target >= 0.8)")

    few = records[:args.generate_examples]
    generated = time_generate_per_token(llm, simulator, few) / len(few)
    ours_per_example = ours_s / len(records)
    print(f"generate a number per token: {generated:.2f} s per example")
    print(f"speed-up of all-at-once over generating per token: {generated / ours_per_example:.1f}x")


if __name__ == "__main__":
    main()

"""Simulation and judging through an OpenAI-compatible endpoint's log-probabilities, against a real server
process on loopback that speaks vLLM's protocol over a real tiny model (tools/testing/vllm_server.py)."""

import math

import numpy as np
import pytest

from evals.scorers.detection import DetectionScorer
from evals.scorers.simulation import AllAtOnceSimulator, SimulationScorer
from tests.evals.test_scoring import paris_record
from tools.errors import InterpError
from tools.llm.endpoint import OpenAIChat
from tools.llm.endpoint_slots import EndpointSlots
from tools.llm.interface import LLMError
from tools.llm.local import LocalLLM
from tools.llm.logprobs import MalformedLogprobs, PromptTokens, choice_distribution, label_distribution, slot_positions
from tools.model.subject import load_subject_model
from tools.testing.servers import vllm_server
from tools.testing.tiny import save_tiny_model

RULE = ["--rule", r"\bparis\b", "--rule-description", "the word paris"]


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    return save_tiny_model("llama", tmp_path_factory.mktemp("tiny-bpe"), tokenizer="bpe")


def endpoint(url: str) -> OpenAIChat:
    chat = OpenAIChat("tiny", base_url=url)
    chat.check()
    return chat


def test_label_distribution_spreads_what_the_top_k_leaves_over_the_missing_labels():
    top = {"0": math.log(0.5), "2": math.log(0.2), " 2": math.log(0.1), "x": math.log(0.1)}
    probabilities, missing = label_distribution(top, ["0", "1", "2", "3"])
    # 0.1 unlisted, shared by "1" and "3"; " 2" is another token than the label's own
    np.testing.assert_allclose(probabilities, np.array([0.5, 0.05, 0.2, 0.05]) / 0.8)
    assert missing == 2
    assert choice_distribution({"Y": math.log(0.3), " no": math.log(0.1), "N": math.log(0.1)}, ["Yes", "No"]) \
        == pytest.approx([0.6, 0.4])
    assert choice_distribution({"maybe": 0.0}, ["Yes", "No"]) is None


def test_a_slot_whose_tab_the_tokenizer_joins_with_what_follows_is_refused_not_misread():
    texts = ["a", "\t", "?", " b", "\tunknown", "\n"]
    tokens = PromptTokens(texts, [None] + [{}] * 5)
    assert slot_positions(PromptTokens(texts[:3], [None, {}, {}]), 0, 1) == [2]
    with pytest.raises(MalformedLogprobs, match="joins slot 1's tab"):
        slot_positions(tokens, 0, 2)


@pytest.mark.parametrize("without", ["prompt_logprobs", "echo"])
def test_simulation_through_the_endpoint_equals_in_process_simulation(bpe_model, without):
    """Each of the two ways an endpoint gives prompt log-probabilities, with a top-k as large as the vocabulary
    so no label is missing: the same model gives the same predictions, within float tolerance."""
    local = AllAtOnceSimulator(LocalLLM(load_subject_model(str(bpe_model), device="cpu"), "local:tiny"))
    examples = [[" the", " cat", " runs", " to", " paris", "."], [" a", " big", " dog", "\t", " sleeps"]]
    with vllm_server(bpe_model, "--max-logprobs", "1000", "--without", without) as url:
        slots = EndpointSlots.probe(endpoint(url), top_k=1000)
        assert slots.mode == ("echo" if without == "prompt_logprobs" else "prompt_logprobs")
        remote = AllAtOnceSimulator(slots)
        predicted, usage, missing = remote.simulate_all("cities in France", examples)
    assert remote.labels == local.labels  # the probe found the same one-token labels as the tokenizer has
    expected, _, _ = local.simulate_all("cities in France", examples)
    for got, want in zip(predicted, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert missing == 0 and usage.prompt_tokens > 0


def test_an_endpoint_without_prompt_logprobs_is_refused_in_one_line_naming_the_alternatives(bpe_model):
    with vllm_server(bpe_model, "--without", "echo,prompt_logprobs") as url:
        with pytest.raises(InterpError, match="--simulator local:PATH") as refused:
            EndpointSlots.probe(endpoint(url))
    assert "\n" not in str(refused.value)


def test_a_scripted_endpoint_following_a_planted_rule_scores_the_true_description_high(bpe_model):
    record = paris_record()
    with vllm_server(bpe_model, *RULE) as url:
        chat = endpoint(url)
        scorer = SimulationScorer(AllAtOnceSimulator(EndpointSlots.probe(chat)))
        true = scorer.score("the word paris", record).scores[0]
        wrong = scorer.score("colours and days of the week", record).scores[0]
        # One request per feature: the examples go as one list of prompts.
    assert true.value > 0.9 and abs(wrong.value) < 0.3
    assert true.details["simulator"] == chat.name and true.details["labels_missing_from_top_k"] > 0


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("without, from_probabilities", [("", True), ("chat_logprobs", False)])
def test_judges_read_p_yes_from_the_answer_logprobs_where_the_endpoint_sends_them(bpe_model, without,
                                                                                  from_probabilities, batch):
    """One excerpt a prompt (P(yes) from the first answer token) or several (P(1) from each listed digit)."""
    record = paris_record(n=4)
    options = [*RULE, "--without", without] if without else RULE
    with vllm_server(bpe_model, *options, "--record", str(bpe_model / f"requests-{without}-{batch}.jsonl")) as url:
        chat = endpoint(url)
        assert chat.chat_logprobs is from_probabilities
        accuracy, ranking = DetectionScorer(chat, parallel=4, batch=batch).score("the word paris", record).scores
    assert accuracy.value == 1.0 and ranking.value == 1.0
    n = accuracy.n
    assert accuracy.details["probabilities"] == (n if from_probabilities else 0)
    assert accuracy.details["text_answers"] == (0 if from_probabilities else n)
    requests = (bpe_model / f"requests-{without}-{batch}.jsonl").read_text().splitlines()
    assert len(requests) - 1 == -(-n // batch)  # one request per prompt, after the check's
    assert accuracy.details.get("examples_per_prompt", 1) == batch


@pytest.mark.parametrize("answer", [
    {"choices": [{"index": 0, "text": "x"}]},  # no logprobs at all
    {"choices": [{"index": 0, "logprobs": {"tokens": ["a", "\t"], "top_logprobs": [None]}}]},  # ragged
    {"choices": [{"index": 0, "logprobs": {"tokens": ["a", "\t", "?"], "top_logprobs": [None, {}, {"0": "x"}]}}]},
    {"choices": []},
])
def test_a_malformed_logprobs_answer_fails_that_feature_in_one_line(tmp_path, answer):
    import json

    from tools.testing.servers import stub_server

    script = tmp_path / "script.json"
    script.write_text(json.dumps([[200, answer]]))
    with stub_server(script=script) as url:
        slots = EndpointSlots(OpenAIChat("stub", base_url=url, max_retries=0), "echo", 20, {"0", "1"})
        with pytest.raises(LLMError, match="malformed|slots|logprobs|log-probability") as failed:
            slots.slot_probabilities_batch("p\n", [["a\t", "?\n<end>"]], ["0", "1"])
    assert "\n" not in str(failed.value)


def test_the_rule_servers_split_tokenizing_gives_the_tokens_of_the_whole_prompt(bpe_model):
    """The rule mode tokenizes a prompt's instructions and its listing apart (each once, kept): that must not
    change a token, or a benchmark's slots would move."""
    from tools.testing.vllm_server import Engine

    engine = Engine(str(bpe_model), *RULE[1::2])
    simulator = AllAtOnceSimulator(LocalLLM(load_subject_model(str(bpe_model), device="cpu"), "local:tiny"))
    listings = [[" the", " cat", "\t", " paris", "\n\n", " é", "  ", "<start>", "."], ["paris"], [" ", "?"]]
    for explanation in ("the word paris", "tabs\tand\nnewlines  <start> inside"):
        for tokens in listings:
            prompt = simulator.prefix(explanation) + "".join(simulator.listing(tokens))
            whole = engine.encode(prompt)
            part = engine.rule_prompt(prompt)
            assert part.ids == whole.ids and part.starts == [start for start, _ in whole.offsets]
            assert len(part.kinds) == len(part.ids)
        described = explanation == "the word paris"
        assert ("fires" in engine.rule_prompt(prompt).kinds) is False  # the last listing holds no paris
        first_alone = engine.rule_prompt(simulator.prefix(explanation) + "".join(simulator.listing(["paris"])))
        assert ("fires" in first_alone.kinds) is described and ("uniform" in first_alone.kinds) is not described


@pytest.mark.parametrize("without, from_probabilities", [("", True), ("chat_logprobs", False)])
def test_the_intruder_judge_reads_its_pick_from_the_answer_logprobs(bpe_model, without, from_probabilities):
    """The rule server names the excerpt whose marks its rule does not fire on: the intruder, every round."""
    from evals.scorers.intruder import IntruderScorer

    options = [*RULE, "--without", without] if without else RULE
    with vllm_server(bpe_model, *options) as url:
        chat = endpoint(url)
        accuracy, p_intruder = IntruderScorer(chat, rounds=8, parallel=4).score("unused", paris_record()).scores
    assert accuracy.value == 1.0 and p_intruder.value == pytest.approx(1.0)
    assert accuracy.details["probabilities"] == (8 if from_probabilities else 0)
    assert accuracy.details["text_answers"] == (0 if from_probabilities else 8)

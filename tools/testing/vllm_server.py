"""A server process on loopback that speaks the part of vLLM's OpenAI-compatible protocol that interp-agent
uses, over a real causal LM from a local folder: what the endpoint path is tested and benchmarked against,
since no vLLM runs on these machines.

    python tools/testing/vllm_server.py MODEL_FOLDER PORT [--served-name NAME] [--max-logprobs 20]
        [--without prompt_logprobs,echo,chat_logprobs,completions] [--rule REGEX --rule-description TEXT]

- `POST /v1/completions`: `prompt` as a string or a list of them; `max_tokens`; `echo` with `logprobs: k`
  (the legacy shape: `tokens`, `text_offset`, `token_logprobs`, `top_logprobs`); vLLM's `prompt_logprobs:
  k` (a list with None first, then `{token_id: {logprob, rank, decoded_token}}`: the top k plus the prompt's
  own token) and `return_token_ids` (`prompt_token_ids`); usage summed over the prompts.
- `POST /v1/chat/completions`: greedy answer; `logprobs: true` with `top_logprobs: k` gives
  `logprobs.content[i].top_logprobs` for each answer token.
- `POST /tokenize` (vLLM's, at the root): `{"count", "tokens"}` of a `prompt`.
- `--without` makes the server behave as one that lacks a feature: it ignores the field, as servers do
  with fields they do not know (`completions`: that route answers 404, as OpenAI's does for chat models).
- `--rule`: the next-token distribution after each tab of the last listing (after the last `<start>`)
  follows a planted rule instead of the model: when the prompt holds `--rule-description`, lines whose
  token matches REGEX put their mass on the highest one-token digit and the rest on "0"; without the
  description every digit is equally likely. Chat answers "Yes" when the example matches, else "No", or
  a list of digits ([1, 0]) for numbered excerpts, each answer token at 0.8 against its opposite.
  The model's logits are not computed at all in that mode, and a prompt's rows are one of four kinds
  (any token, a slot that fires, one that does not, one without the description) whose top-k is built
  once, and a prompt's instructions and listing are each tokenized once and kept (excerpts repeat across
  features), so it answers at once (for benchmarks); MODEL_FOLDER then needs only a tokenizer.
- `--record FILE`: every request appended as a JSON line, so a benchmark can replay exactly what was sent.
"""

import argparse
import math
import re
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import accumulate
from typing import Any, NamedTuple, cast

import orjson
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tools.testing.json_answers import send_json

FEATURES = ("prompt_logprobs", "echo", "chat_logprobs", "completions")
Row = torch.Tensor | dict[int, float]
"""A next-token distribution: the model's log-probabilities over the vocabulary, or a rule's tokens above -30."""
CACHED_PARTS = 4096
"""Prompt parts whose tokens and row kinds the rule mode keeps: a feature's prompts share their instructions
and explanation, and excerpts repeat across features."""


class Part(NamedTuple):
    """A piece of a prompt, tokenized: its ids, each token's start within the piece, and the kind of the row
    after each token (the rule mode's)."""
    ids: list[int]
    starts: list[int]
    kinds: list[str]


class Engine:
    """Tokenizes, runs the model (or the rule) and turns log-probabilities into vLLM's shapes."""

    def __init__(self, folder: str, rule: str = "", description: str = ""):
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = None if rule else AutoModelForCausalLM.from_pretrained(folder).eval()
        self.rule = re.compile(rule) if rule else None
        self.description = description
        self.lock = threading.Lock()
        digits = {str(i): self.single_token(str(i)) for i in range(11)}
        self.digits = {label: token for label, token in digits.items() if token is not None}
        self.vocab_size = len(self.tokenizer)
        self.pieces = [str(self.tokenizer.decode([token])) for token in range(self.vocab_size)]
        """Every token's text, decoded once: answers name thousands of tokens each."""
        self.kinds = self.rule_kinds() if rule else {}
        self.tops: dict[tuple[str, int], list[tuple[int, float]]] = {}
        self.fragments: dict[tuple[str, int], orjson.Fragment] = {}
        self.parts: OrderedDict[tuple[str, bool, bool], Part] = OrderedDict()
        self.chat_entries: dict[tuple, dict] = {}

    def rule_kinds(self) -> dict[str, dict[int, float]]:
        """The next-token distributions the rule gives, as the tokens that are not at -30: any token
        (all mass on the end of text), a slot that fires (the highest digit), one that does not ("0"), and
        one whose prompt lacks the description (every digit alike)."""
        high, zero = self.digits[max(self.digits, key=int)], self.digits["0"]
        return {"any": {self.tokenizer.eos_token_id or 0: 0.0},
                "fires": {high: math.log(0.9), zero: math.log(0.1)},
                "quiet": {zero: math.log(0.9), high: math.log(0.1)},
                "uniform": {token: math.log(1 / len(self.digits)) for token in self.digits.values()}}

    def kind_top(self, kind: str, k: int) -> list[tuple[int, float]]:
        """The top k of a kind (made once)."""
        if (kind, k) not in self.tops:
            self.tops[kind, k] = self.top(self.kinds[kind], k)
        return self.tops[kind, k]

    def echo_top(self, kind: str, k: int) -> orjson.Fragment:
        """A kind's legacy `top_logprobs` entry, serialized once: an answer repeats it thousands of times."""
        if (kind, k) not in self.fragments:
            top = {self.pieces[token]: value for token, value in self.kind_top(kind, k)}
            self.fragments[kind, k] = orjson.Fragment(orjson.dumps(top))
        return self.fragments[kind, k]

    def single_token(self, text: str) -> int | None:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else None

    def decode(self, token: int) -> str:
        return self.pieces[token]

    def log_probs(self, ids: list[int]) -> torch.Tensor:
        """[len(ids), vocab]: row i is the model's distribution of the token after ids[:i+1]."""
        assert self.model is not None
        with self.lock, torch.no_grad():
            logits = self.model(torch.tensor([ids])).logits[0].float()
        return torch.log_softmax(logits, dim=-1)

    def rule_row_kinds(self, offsets: list[tuple[int, int]], text: str, listing: bool, described: bool) -> list[str]:
        """The kind of row i (the distribution of the token after tokens[:i+1]), from each token's offsets:
        only a tab inside the listing (`listing`: `text` is the part from its `<start>` on) is a slot."""
        assert self.rule is not None
        kinds = []
        for start, end in offsets:
            if not listing or end == start or not text[start:end].endswith("\t"):
                kinds.append("any")
            elif not described:
                kinds.append("uniform")
            else:
                line = text[text.rfind("\n", 0, start) + 1:start]
                kinds.append("fires" if self.rule.search(line) else "quiet")
        return kinds

    def rule_prompt(self, text: str) -> Part:
        """A prompt's tokens and row kinds, from its part before the last `<start>` and the part from there
        on, each tokenized once and kept: the split falls where the pre-tokenizer splits anyway (a newline
        before "<"), so the tokens are those of the whole text (tests/tools/test_endpoint_logprobs.py)."""
        cut, described = text.rfind("<start>"), self.description in text
        if cut <= 0:  # no listing to split off: every tab is a slot
            return self.rule_part(text, True, True, described)
        head, tail = self.rule_part(text[:cut], True, False, described), self.rule_part(text[cut:], False, True,
                                                                                          described)
        return Part(head.ids + tail.ids, head.starts + [cut + start for start in tail.starts], head.kinds + tail.kinds)

    def rule_part(self, text: str, special: bool, listing: bool, described: bool) -> Part:
        key = (text, special, described)
        with self.lock:
            part = self.parts.get(key)
            if part is not None:
                self.parts.move_to_end(key)
                return part
        encoded = self.encode(text, special)
        part = Part(encoded.ids, [start for start, _ in encoded.offsets],
                    self.rule_row_kinds(encoded.offsets, text, listing, described))
        with self.lock:
            self.parts[key] = part
            while len(self.parts) > CACHED_PARTS:
                self.parts.popitem(last=False)
        return part

    def generate(self, ids: list[int], text: str, max_tokens: int) -> tuple[list[int], list[Row]]:
        """Greedy tokens and, for each, the distribution it was chosen from."""
        if self.rule is not None:
            tokens = self.encode(self.rule_answer(text), special=False).ids[:max_tokens]
            other = {"Y": "N", "N": "Y", "1": "0", "0": "1"}
            rows: list[Row] = []
            for token in tokens:
                flipped = other.get(self.pieces[token].strip()[:1])
                rows.append({token: 0.0} if flipped is None else
                            {token: math.log(0.8), self.encode(flipped, special=False).ids[0]: math.log(0.2)})
            return tokens, rows
        tokens, rows, context = [], [], list(ids)
        for _ in range(max_tokens):
            row = self.log_probs(context)[-1]
            token = int(row.argmax())
            tokens.append(token)
            rows.append(row)
            context.append(token)
            if token == self.tokenizer.eos_token_id:
                break
        return tokens, rows

    def rule_answer(self, text: str) -> str:
        """An explainer's answer (the prompt ends asking for one): the rule's description, the first marked
        words and how many differ, nearly always a text of its own for each feature as a real LLM's is (so
        the explanations' embeddings for search are computed, not found in the embedder's cache). A judge's
        answer by the rule: one digit per numbered excerpt, or Yes/No for a single one; an intruder judge's,
        the number of the excerpt whose marks the rule does not fire on."""
        assert self.rule is not None
        if text.rstrip().endswith("Explanation:"):
            marked = list(dict.fromkeys(token.strip() for token in re.findall(r"<<(.+?)>>", text)))
            shown = " and ".join(f"'{token}'" for token in marked[:3])
            return f"{self.description}, as in {shown or 'nothing'}, one of {len(marked)} marked words"
        described = self.description in text
        blocks = re.findall(r"<example (\d+)>\n(.*?)\n</example \1>", text, re.S)
        if blocks and "Which excerpt is the intruder?" in text:  # the one whose marks the rule does not fire on
            odd = [n for n, b in blocks if not any(self.rule.search(m) for m in re.findall(r"<<(.+?)>>", b))]
            return (odd or [blocks[0][0]])[0]
        if blocks:
            return "[" + ", ".join("1" if described and self.rule.search(b) else "0" for _, b in blocks) + "]"
        return "Yes" if described and self.rule.search(text.rsplit("<example>", 1)[-1]) else "No"

    def top(self, row: Row, k: int) -> list[tuple[int, float]]:
        """A row's k most likely tokens; a rule's row lists only its tokens above -30, the rest fill in."""
        if isinstance(row, torch.Tensor):
            values, indices = row.topk(min(k, self.vocab_size))
            return list(zip(indices.tolist(), values.tolist(), strict=True))
        listed = sorted(row.items(), key=lambda item: -item[1])[:k]
        fill = (token for token in range(self.vocab_size) if token not in row)
        return listed + [(next(fill), -30.0) for _ in range(min(k, self.vocab_size) - len(listed))]

    @staticmethod
    def value(row: Row, token: int) -> float:
        return float(row[token]) if isinstance(row, torch.Tensor) else row.get(token, -30.0)

    def encode(self, text: str, special: bool = True) -> Any:
        """The fast tokenizer's own encoding (ids and offsets): transformers' wrapper around it costs more
        per call than the tokenizing, and the rule mode tokenizes every prompt it gets."""
        return self.tokenizer.backend_tokenizer.encode(text, add_special_tokens=special)

    def legacy_logprobs(self, shown: list[int], chosen: list, tops: list) -> dict:
        """The legacy `logprobs` object: the shown tokens' texts, where each starts, and their log-probabilities."""
        tokens = [self.pieces[t] for t in shown]
        offsets = [0, *accumulate(map(len, tokens))][:-1]
        return {"tokens": tokens, "text_offset": offsets, "token_logprobs": chosen, "top_logprobs": tops}

    def generated_choice(self, index: int, ids: list[int], prompt: str,
                         request: dict) -> tuple[list[int], list[Row], str, dict]:
        """The greedy answer to a completions prompt, its rows, its text, and the choice holding it."""
        new, new_rows = self.generate(ids, prompt, int(request.get("max_tokens", 16) or 0))
        text = "".join(self.decode(t) for t in new)
        return new, new_rows, text, {"index": index, "text": text, "logprobs": None, "finish_reason": "length"}

    def completion_choice(self, index: int, prompt: str, request: dict, without: set[str]) -> tuple[dict, int, int]:
        if self.rule is not None:
            return self.rule_completion_choice(index, prompt, request, without)
        ids = self.tokenizer(prompt)["input_ids"]
        rows = self.log_probs(ids)
        new, new_rows, text, choice = self.generated_choice(index, ids, prompt, request)
        k = request.get("logprobs")
        echo = bool(request.get("echo")) and "echo" not in without
        if k is not None:
            shown = (ids if echo else []) + new
            generated = cast(list[torch.Tensor], new_rows)  # the model's rows
            dists = torch.cat([rows[:len(ids) - 1]] * echo + [torch.stack(generated)] * bool(generated)) \
                if echo or generated else torch.zeros((0, self.vocab_size))
            values, indices = dists.topk(min(k, self.vocab_size), dim=-1)
            chosen = dists.gather(1, torch.tensor(shown[1:] if echo else shown).view(-1, 1)).view(-1).tolist()
            ranked = zip(indices.tolist(), values.tolist(), strict=True)
            tops: list = [None] * echo + [{self.pieces[i]: v for i, v in zip(row_ids, row_values, strict=True)}
                                          for row_ids, row_values in ranked]
            choice["logprobs"] = self.legacy_logprobs(shown, [None] * echo + chosen, tops)
            if echo:
                choice["text"] = prompt + text
        wanted = request.get("prompt_logprobs")
        if wanted is not None and "prompt_logprobs" not in without:
            entries: list = [None]
            values, indices = rows[:len(ids) - 1].topk(min(wanted, self.vocab_size), dim=-1)
            for position, (row_ids, row_values) in enumerate(zip(indices.tolist(), values.tolist(), strict=True), 1):
                entry = {str(t): {"logprob": v, "rank": rank, "decoded_token": self.pieces[t]}
                         for rank, (t, v) in enumerate(zip(row_ids, row_values, strict=True), 1)}
                actual, row = ids[position], rows[position - 1]
                if str(actual) not in entry:
                    entry[str(actual)] = {"logprob": float(row[actual]), "rank": int((row > row[actual]).sum()) + 1,
                                          "decoded_token": self.pieces[actual]}
                entries.append(entry)
            choice["prompt_logprobs"] = entries
        if request.get("return_token_ids"):
            choice["prompt_token_ids"], choice["token_ids"] = ids, new
        return choice, len(ids), len(new)

    def rule_completion_choice(self, index: int, prompt: str, request: dict,
                               without: set[str]) -> tuple[dict, int, int]:
        """`completion_choice` by the rule, with no row of the vocabulary's size per token: each prompt
        position's top-k is its kind's, and the legacy entries are serialized once per kind."""
        part = self.rule_prompt(prompt)
        ids, kinds = part.ids, part.kinds[:-1]
        new, new_rows, text, choice = self.generated_choice(index, ids, prompt, request)
        k = request.get("logprobs")
        echo = bool(request.get("echo")) and "echo" not in without
        if k is not None:
            shown = (ids if echo else []) + new
            fragments = {kind: self.echo_top(kind, k) for kind in self.kinds}
            tops: list = [None, *map(fragments.__getitem__, kinds)] if echo else []
            chosen = [None] + [self.kinds[kind].get(token, -30.0) for kind, token in zip(kinds, ids[1:], strict=True)] \
                if echo else []
            for token, row in zip(new, new_rows, strict=True):
                tops.append({self.pieces[i]: v for i, v in self.top(row, k)})
                chosen.append(self.value(row, token))
            choice["logprobs"] = self.legacy_logprobs(shown, chosen, tops)
            if echo:
                choice["text"] = prompt + text
        wanted = request.get("prompt_logprobs")
        if wanted is not None and "prompt_logprobs" not in without:
            entries: list = [None]
            for kind, actual in zip(kinds, ids[1:], strict=True):
                top = self.kind_top(kind, wanted)
                entry = {str(t): {"logprob": v, "rank": rank, "decoded_token": self.pieces[t]}
                         for rank, (t, v) in enumerate(top, 1)}
                if str(actual) not in entry:
                    value = self.kinds[kind].get(actual, -30.0)
                    rank = 1 + sum(other > value for other in self.kinds[kind].values())
                    entry[str(actual)] = {"logprob": value, "rank": rank, "decoded_token": self.pieces[actual]}
                entries.append(entry)
            choice["prompt_logprobs"] = entries
        if request.get("return_token_ids"):
            choice["prompt_token_ids"], choice["token_ids"] = ids, new
        return choice, len(ids), len(new)

    def chat_choice(self, request: dict, without: set[str]) -> tuple[dict, int, int]:
        messages = request["messages"]
        if self.tokenizer.chat_template:
            rendered: Any = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                               return_dict=True)
            ids = list(rendered["input_ids"])
        else:
            ids = self.encode("\n\n".join(m["content"] for m in messages)).ids
        # the rule reads the messages themselves; a model reads the prompt its tokens spell
        prompt = "\n\n".join(m["content"] for m in messages) if self.rule else str(self.tokenizer.decode(ids))
        new, rows = self.generate(ids, prompt, int(request.get("max_tokens") or 16))
        choice: dict = {"index": 0, "finish_reason": "length", "logprobs": None,
                        "message": {"role": "assistant", "content": "".join(self.decode(t) for t in new)}}
        if request.get("logprobs") and "chat_logprobs" not in without:
            k = int(request.get("top_logprobs") or 0)

            choice["logprobs"] = {"content": [self.chat_entry(t, r, k) for t, r in zip(new, rows, strict=True)]}
        return choice, len(ids), len(new)

    def chat_entry(self, token: int, row: Row, k: int) -> dict:
        """An answer token's `logprobs.content` entry with its top k; a rule's are kept (answers repeat them)."""
        def entry(token: int, value: float) -> dict:
            text = self.decode(token)
            return {"token": text, "logprob": value, "bytes": list(text.encode())}

        key = None if isinstance(row, torch.Tensor) else (token, tuple(row.items()), k)
        made = self.chat_entries.get(key) if key is not None else None
        if made is None:
            made = entry(token, self.value(row, token)) | {"top_logprobs": [entry(i, v) for i, v in self.top(row, k)]}
            if key is not None:
                self.chat_entries[key] = made
        return made


def error(status: int, message: str, kind: str = "BadRequestError") -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": kind, "code": status}}


def serve(engine: Engine, port: int, served_name: str, max_logprobs: int, without: set[str],
          record: str = "") -> None:
    recorded = open(record, "a", encoding="utf-8") if record else None
    record_lock = threading.Lock()

    def answer(path: str, request: dict) -> tuple[int, dict]:
        if recorded is not None and path != "/tokenize":
            with record_lock:
                recorded.write(orjson.dumps({"path": path, "body": request}).decode() + "\n")
                recorded.flush()
        if request.get("model") != served_name:
            return error(404, f"The model `{request.get('model')}` does not exist.", "NotFoundError")
        for field in ("logprobs", "top_logprobs", "prompt_logprobs"):
            value = request.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > max_logprobs:
                return error(400, f"Requested {field} of {value}, which is greater than max allowed: {max_logprobs}")
        usage = [0, 0]
        if path == "/tokenize":
            ids = engine.tokenizer(request["prompt"], add_special_tokens=request.get("add_special_tokens", True))
            return 200, {"tokens": ids["input_ids"], "count": len(ids["input_ids"]), "max_model_len": 4096}
        if path == "/v1/completions" and "completions" not in without:
            prompts = request.get("prompt")
            prompts = [prompts] if isinstance(prompts, str) else prompts
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                return error(400, "prompt must be a string or a list of strings")
            choices = []
            for index, prompt in enumerate(prompts):
                choice, used, made = engine.completion_choice(index, prompt, request, without)
                choices.append(choice)
                usage[0], usage[1] = usage[0] + used, usage[1] + made
            body = {"id": "cmpl-loopback", "object": "text_completion", "model": served_name, "choices": choices}
        elif path == "/v1/chat/completions":
            choice, usage[0], usage[1] = engine.chat_choice(request, without)
            body = {"id": "chatcmpl-loopback", "object": "chat.completion", "model": served_name, "choices": [choice]}
        else:
            return error(404, f"no route {path}", "NotFoundError")
        return 200, body | {"created": 0, "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                                    "total_tokens": sum(usage)}}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real server does: the client's pool reuses connections
        disable_nagle_algorithm = True  # headers and body go out as two writes; Nagle held the body ~40 ms

        def log_message(self, *args) -> None:
            pass

        def send(self, status: int, body: dict) -> None:
            # answers run to megabytes; the stdlib's encoder would be the bottleneck
            send_json(self, status, orjson.dumps(body))

        def do_GET(self) -> None:
            self.send(200, {"object": "list", "data": [{"id": served_name, "object": "model",
                                                        "max_model_len": 4096}]})

        def do_POST(self) -> None:
            request = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send(*answer(self.path, request))

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # the default 5 resets connections when a client opens 64 at once
        daemon_threads = True

    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("port", type=int)
    parser.add_argument("--served-name", default="tiny")
    parser.add_argument("--max-logprobs", type=int, default=20, help="vLLM's default limit")
    parser.add_argument("--without", default="", help=f"comma-separated, some of {', '.join(FEATURES)}")
    parser.add_argument("--rule", default="")
    parser.add_argument("--rule-description", default="")
    parser.add_argument("--record", default="", help="append every request as a JSON line to this file")
    args = parser.parse_args()
    missing = {name for name in args.without.split(",") if name}
    if missing - set(FEATURES):
        parser.error(f"--without takes {', '.join(FEATURES)}")
    torch.set_num_threads(1)
    serve(Engine(args.model, args.rule, args.rule_description), args.port, args.served_name, args.max_logprobs,
          missing, args.record)

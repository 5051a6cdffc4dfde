"""Documents to fixed-length token windows.

Documents are tokenized without special tokens and packed end to end, each followed by a separator
(the tokenizer's BOS, as SAELens does, or EOS when there is no BOS). With `prepend_bos` every window
starts with BOS, so every window is a well-formed model input. Special-token positions are masked
out of all feature statistics: BOS is an attention sink whose activations dwarf real text.
"""

import math
from collections.abc import Iterable, Iterator

import torch
from transformers import PreTrainedTokenizerBase

from tools.errors import InterpError

TOKENIZE_BATCH = 256


def separator_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise InterpError("the tokenizer has neither a BOS nor an EOS token to separate documents")


def resolve_prepend_bos(setting: str, tokenizer: PreTrainedTokenizerBase) -> bool:
    """`auto` prepends BOS whenever the tokenizer has one."""
    if setting == "auto":
        return tokenizer.bos_token_id is not None
    if setting not in ("always", "never"):
        raise InterpError(f"unknown BOS setting '{setting}'; expected auto, always or never")
    if setting == "always" and tokenizer.bos_token_id is None:
        raise InterpError("--bos always was given but the tokenizer has no BOS token")
    return setting == "always"


def _batches(documents: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for document in documents:
        batch.append(document)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def token_windows(
    documents: Iterable[str],
    tokenizer: PreTrainedTokenizerBase,
    length: int,
    prepend_bos: bool,
    max_tokens: int,
) -> torch.Tensor:
    """Up to ceil(max_tokens / length) windows [n_windows, length], int64. A last partial window is dropped."""
    if length < 2:
        raise InterpError(f"window length must be at least 2 tokens, got {length}")
    max_windows = math.ceil(max_tokens / length)
    content = length - 1 if prepend_bos else length
    separator = separator_id(tokenizer)
    prefix = [int(tokenizer.bos_token_id)] if prepend_bos else []
    windows: list[list[int]] = []
    pending: list[int] = []
    for batch in _batches(documents, TOKENIZE_BATCH):
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            pending.extend(ids)
            pending.append(separator)
        while len(pending) >= content and len(windows) < max_windows:
            windows.append(prefix + pending[:content])
            del pending[:content]
        if len(windows) >= max_windows:
            break
    return torch.tensor(windows, dtype=torch.long).view(len(windows), length)


def content_mask(window_ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """True at positions holding real text, False at special tokens (BOS, EOS, padding). Same shape."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=window_ids.dtype, device=window_ids.device)
    return ~torch.isin(window_ids, special)


def token_strings(token_ids: list[int], tokenizer: PreTrainedTokenizerBase, memo: dict[int, str]) -> list[str]:
    """Each token decoded on its own, as an explainer should read it (' word', not 'Ġword' or '▁word')."""
    out = []
    for token_id in token_ids:
        if token_id not in memo:
            memo[token_id] = str(tokenizer.decode([token_id]))
        out.append(memo[token_id])
    return out

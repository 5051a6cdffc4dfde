"""A search query's vector without torch: the sentence-transformers BERT encoders our embedder runs (the
embedded all-MiniLM-L6-v2 among them: BERT, mean pooling, unit length), computed in numpy.

Why hand-written rather than the library: `interp search` embeds one short query, and importing torch,
transformers and sentence-transformers costs seconds before the first vector (~9 s cold on this project's
2-core machine), longer than the search itself. Six BERT layers over a dozen tokens are a few milliseconds of
numpy. The vectors must be the library's, since they are compared with explanation vectors the library
made: `tests/evals/test_query_encoder.py` checks them against sentence-transformers to 1e-5. A folder this
encoder cannot reproduce exactly (another architecture, pooling or normalization) returns None from
`load_query_encoder`, and the caller uses the library.
"""

import json
from pathlib import Path

import numpy as np

MEAN_POOLING = {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False}
MODULES = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
           "sentence_transformers.models.Normalize"]


class QueryEncoder:
    """BERT (post-layer-norm, exact GELU, absolute positions) + mean pooling + normalization."""

    def __init__(self, folder: Path, name: str, config: dict, max_length: int):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.name = name
        """The embedder's name, as `Embedder.name` gives it, so stored vectors are compared with their kind."""
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        weights = load_file(str(folder / "model.safetensors"))
        self.w = {name.removeprefix("bert."): value.astype(np.float32) for name, value in weights.items()}
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])

    def norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[f"{prefix}.weight"] + self.w[f"{prefix}.bias"]

    def dense(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self.w[f"{prefix}.weight"].T + self.w[f"{prefix}.bias"]

    def embed(self, texts: list[str]) -> np.ndarray:
        """[len(texts), dim], as `Embedder.embed` returns them."""
        return np.stack([self.encode(text) for text in texts])

    def encode(self, text: str) -> np.ndarray:
        """The unit-length vector [dim], float32."""
        from scipy.special import erf

        encoding = self.tokenizer.encode(text)
        ids, types = np.array(encoding.ids), np.array(encoding.type_ids)
        x = (self.w["embeddings.word_embeddings.weight"][ids] + self.w["embeddings.position_embeddings.weight"][
            np.arange(len(ids))] + self.w["embeddings.token_type_embeddings.weight"][types])
        x = self.norm(x, "embeddings.LayerNorm")
        n, dim = x.shape
        head = dim // self.heads
        for layer in range(self.layers):
            at = f"encoder.layer.{layer}"
            q, k, v = (self.dense(x, f"{at}.attention.self.{name}").reshape(n, self.heads, head).transpose(1, 0, 2)
                       for name in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(head)  # [heads, n, n]
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v  # [heads, n, head]
            attended = self.dense(context.transpose(1, 0, 2).reshape(n, dim), f"{at}.attention.output.dense")
            x = self.norm(x + attended, f"{at}.attention.output.LayerNorm")
            hidden = self.dense(x, f"{at}.intermediate.dense")
            hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
            x = self.norm(x + self.dense(hidden, f"{at}.output.dense"), f"{at}.output.LayerNorm")
        pooled = x.mean(0)
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)


def load_query_encoder(folder: Path, name: str) -> QueryEncoder | None:
    """The numpy encoder for a sentence-transformers folder, or None where it would not give the library's
    vectors exactly."""
    try:
        modules = [module["type"] for module in json.loads((folder / "modules.json").read_text())]
        config = json.loads((folder / "config.json").read_text())
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        settings = json.loads((folder / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (modules != MODULES or config.get("model_type") != "bert" or config.get("hidden_act") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"
            or any(pooling.get(key, False) != value for key, value in MEAN_POOLING.items())
            or settings.get("do_lower_case") or not (folder / "model.safetensors").is_file()
            or not (folder / "tokenizer.json").is_file()):
        return None
    return QueryEncoder(folder, name, config, int(settings.get("max_seq_length", 512)))

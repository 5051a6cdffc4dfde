"""A feature as the explainers and scorers see it, read from the catalog: its examples split into explain and
score, with special tokens left out."""


from agent.labeling.token_stats import CorpusCounts
from evals.records import FeatureRecord, feature_record
from tools.catalog import Catalog
from tools.errors import InterpError


def special_token_ids(model_row: dict) -> set[int]:
    """BOS, separators and padding, to leave out of what an LLM reads."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_row["path"])
    except (OSError, ValueError) as error:
        raise InterpError(f"cannot load the tokenizer of model '{model_row['name']}' from {model_row['path']}: "
                          f"{str(error).splitlines()[0]}") from None
    return set(tokenizer.all_special_ids)


def corpus_counts(catalog: Catalog, set_id: str, special: set[int]) -> CorpusCounts:
    windows = catalog.random_windows(set_id)
    return CorpusCounts.from_windows([t for i, t in zip(ids, tokens, strict=True) if i not in special]
                                     for ids, tokens in windows)


def read_record(catalog: Catalog, set_id: str, feature: int, special: set[int], score_active: int,
                score_random: int) -> FeatureRecord:
    return read_records(catalog, set_id, [feature], special, score_active, score_random)[0]


def read_records(catalog: Catalog, set_id: str, features: list[int], special: set[int], score_active: int,
                 score_random: int) -> list[FeatureRecord]:
    """The records of many features from two queries, in the order given."""
    max_acts, examples = catalog.max_acts(set_id, features), catalog.examples_of(set_id, features)
    return [feature_record(feature, max_acts[feature], examples[feature], special, score_active, score_random)
            for feature in features]

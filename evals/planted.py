"""Planted features: rules over a window's tokens whose meaning we know, so explainers and scorers can be
judged where the answer is known.

Each feature is a rule (tokens -> one activation per token), a ground-truth description and plausible
false descriptions. `PlantedSource` stands in for a model's features in the cache pass, so the whole
pipeline (example sampling -> explainer -> scorers) runs on planted features exactly as on real ones.
Rules read the subject tokenizer's decoded tokens (" Monday" -> "monday"); a word the tokenizer splits
is, as for a real feature, only partly seen.
"""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from transformers import PreTrainedTokenizerBase

from tools.data.windows import token_strings
from tools.errors import InterpError
from tools.features import FeatureSource
from tools.model.hooks import HookPoint
from tools.model.subject import SubjectModel

Rule = Callable[[list[str]], list[float]]

RULES_VERSION = 1
"""Bumped whenever a rule changes, so a cached planted set is never reused across different rules."""


@dataclass(frozen=True)
class PlantedFeature:
    name: str
    description: str
    """The ground truth, as a person would write the label."""
    false_descriptions: tuple[str, ...]
    """Plausible but wrong: nearby topics, the wrong part of the context, a too-broad reading."""
    rule: Rule

    def activations(self, tokens: list[str]) -> list[float]:
        return self.rule(tokens)


def word(token: str) -> str:
    return token.strip().lower()


def in_set(words: set[str]) -> Rule:
    return lambda tokens: [1.0 if word(t) in words else 0.0 for t in tokens]


def matching(pattern: str) -> Rule:
    """Tokens whose stripped text matches the whole pattern."""
    compiled = re.compile(pattern)
    return lambda tokens: [1.0 if compiled.fullmatch(t.strip()) else 0.0 for t in tokens]


def after(previous: set[str]) -> Rule:
    """The word token right after one of `previous` (spaces and punctuation not skipped)."""
    def rule(tokens: list[str]) -> list[float]:
        return [1.0 if i > 0 and word(tokens[i - 1]) in previous and re.search(r"\w", tokens[i]) else 0.0
                for i in range(len(tokens))]
    return rule


def inside(opening: str, closing: str) -> Rule:
    """Tokens between an opening and a closing mark (exclusive), nesting counted; for '"' both are '"'."""
    def rule(tokens: list[str]) -> list[float]:
        values, depth = [], 0
        for token in tokens:
            opens, closes = token.count(opening), token.count(closing)
            if opening == closing:
                inside_before = depth % 2 == 1
                depth += opens
                values.append(1.0 if inside_before and not opens else 0.0)
            else:
                values.append(1.0 if depth > 0 and not closes else 0.0)
                depth = max(0, depth + opens - closes)
        return values
    return rule


def sentence_initial(tokens: list[str]) -> list[float]:
    values, start = [], True
    for token in tokens:
        is_word = bool(re.search(r"[A-Za-z]", token))
        values.append(1.0 if start and is_word else 0.0)
        if is_word:
            start = False
        if re.search(r"[.!?]\s*$", token) or "\n" in token:
            start = True
    return values


def capitalized_mid_sentence(tokens: list[str]) -> list[float]:
    initial = sentence_initial(tokens)
    return [1.0 if re.fullmatch(r" [A-Z][a-z]{2,}", t) and not first and word(t) not in COMMON_CAPITALS else 0.0
            for t, first in zip(tokens, initial, strict=True)]


def second_name(tokens: list[str]) -> list[float]:
    """The second distinct capitalized mid-sentence word of the window, wherever it occurs."""
    names: list[str] = []
    values = []
    for token, is_name in zip(tokens, capitalized_mid_sentence(tokens), strict=True):
        if is_name and word(token) not in names:
            names.append(word(token))
        values.append(1.0 if is_name and len(names) >= 2 and word(token) == names[1] else 0.0)
    return values


def repeated_word(tokens: list[str]) -> list[float]:
    """A word token (4+ letters) that already occurred earlier in the window."""
    seen: set[str] = set()
    values = []
    for token in tokens:
        key = word(token)
        long_word = bool(re.fullmatch(r"[a-z]{4,}", key))
        values.append(1.0 if long_word and key in seen else 0.0)
        if long_word:
            seen.add(key)
    return values


def digit_in_number(tokens: list[str]) -> list[float]:
    """Digits that continue a number (the second and later digits), graded by position: 0.5, 0.75, 1."""
    values, run = [], 0
    for token in tokens:
        if token.strip().isdigit() and token == token.strip():
            run += 1
            values.append(0.0 if run == 1 else min(1.0, 0.25 + 0.25 * run))
        else:
            run = 1 if token.strip().isdigit() else 0
            values.append(0.0)
    return values


def line_end(tokens: list[str]) -> list[float]:
    """The token just before a line break."""
    return [1.0 if i + 1 < len(tokens) and tokens[i + 1].startswith("\n") and "\n" not in tokens[i]
            and tokens[i].strip() else 0.0 for i in range(len(tokens))]


COMMON_CAPITALS = {"i", "the", "a", "an", "and", "but", "or", "if", "it", "in", "on", "of", "to", "you", "we", "he",
                   "she", "they", "this", "that", "god", "mr", "mrs", "dr"}
COLOURS = {"red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "grey", "gray",
           "violet", "scarlet", "crimson"}
WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
MONTHS = {"january", "february", "march", "april", "june", "july", "august", "september", "october", "november",
          "december"}
ANIMALS = {"cat", "cats", "dog", "dogs", "horse", "horses", "bird", "birds", "fish", "cow", "cows", "pig", "pigs",
           "sheep", "mouse", "mice", "rat", "rats", "lion", "tiger", "bear", "bears", "wolf", "fox", "duck", "chicken",
           "snake", "elephant", "monkey", "rabbit", "frog", "goat", "owl", "whale", "shark"}
FAMILY = {"mother", "father", "mom", "dad", "sister", "brother", "son", "daughter", "wife", "husband", "uncle",
          "aunt", "grandmother", "grandfather", "parents", "children", "child", "baby", "cousin", "family"}
BODY = {"head", "hand", "hands", "eye", "eyes", "ear", "ears", "nose", "mouth", "arm", "arms", "leg", "legs", "foot",
        "feet", "heart", "face", "finger", "fingers", "teeth", "tooth", "hair", "back", "neck", "brain", "skin"}
FOOD = {"bread", "cheese", "meat", "apple", "apples", "pie", "cake", "beer", "wine", "coffee", "tea", "milk", "egg",
        "eggs", "soup", "pizza", "rice", "fruit", "sugar", "butter", "chocolate", "dinner", "lunch", "breakfast",
        "food", "salt"}
EMOTIONS = {"love", "hate", "fear", "joy", "anger", "happy", "sad", "angry", "afraid", "happiness", "sorrow",
            "grief", "jealous", "lonely", "proud", "ashamed", "worry", "hope"}
MONEY = {"money", "dollar", "dollars", "cents", "cash", "pay", "paid", "rich", "poor", "price", "cost", "bank",
         "tax", "taxes", "debt", "wealth", "buy", "sell", "sold", "bought", "salary"}
TIME_WORDS = {"day", "days", "night", "nights", "morning", "evening", "year", "years", "hour", "hours", "minute",
              "minutes", "week", "weeks", "month", "months", "today", "tomorrow", "yesterday", "century"}
MODALS = {"can", "could", "will", "would", "shall", "should", "may", "might", "must"}
PRONOUNS = {"he", "she", "they", "him", "her", "them", "his", "hers", "their", "theirs", "we", "us", "our"}
NEGATIONS = {"not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "n't", "cannot", "nowhere"}
ARTICLES = {"the", "a", "an"}
PREPOSITIONS = {"in", "on", "at", "by", "for", "with", "from", "into", "onto", "under", "over", "between", "through",
                "during", "without", "about", "against", "among"}
CONJUNCTIONS = {"and", "but", "or", "so", "because", "although", "though", "while", "unless", "whereas"}
NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                "twenty", "hundred", "thousand", "million"}
WEATHER = {"rain", "snow", "wind", "storm", "sun", "cloud", "clouds", "weather", "cold", "hot", "warm", "fog",
           "thunder", "rainy", "sunny"}
RELIGION = {"god", "church", "heaven", "hell", "prayer", "pray", "sin", "soul", "bible", "angel", "angels", "devil",
            "priest", "holy", "lord", "saint"}
COMPUTING = {"computer", "computers", "program", "programs", "software", "unix", "code", "bug", "bugs", "system",
             "systems", "data", "file", "files", "programmer", "programmers", "machine", "memory", "disk"}


def planted(name: str, description: str, false: tuple[str, ...], rule: Rule) -> PlantedFeature:
    return PlantedFeature(name, description, false, rule)


PLANTED: tuple[PlantedFeature, ...] = (
    planted("colours", "colour words such as red, blue and green",
            ("fruit names", "adjectives describing size", "words about painting a house"), in_set(COLOURS)),
    planted("weekdays", "names of the days of the week",
            ("names of the months", "words about time of day", "holidays and festivals"), in_set(WEEKDAYS)),
    planted("months", "names of the months of the year",
            ("names of the days of the week", "the seasons of the year", "numbers written as words"), in_set(MONTHS)),
    planted("animals", "names of animals such as cat, dog and horse",
            ("names of plants and trees", "family members", "words for food"), in_set(ANIMALS)),
    planted("family", "family members such as mother, brother and wife",
            ("names of animals", "professions and jobs", "personal pronouns"), in_set(FAMILY)),
    planted("body", "parts of the human body",
            ("items of clothing", "names of animals", "verbs of motion"), in_set(BODY)),
    planted("food", "food and drink",
            ("kitchen utensils and furniture", "names of animals", "colour words"), in_set(FOOD)),
    planted("emotions", "words for emotions and feelings",
            ("words for thinking and believing", "family members", "negation words"), in_set(EMOTIONS)),
    planted("money", "words about money, buying and paying",
            ("numbers and digits", "words about work and jobs", "words about time"), in_set(MONEY)),
    planted("time", "words for units and periods of time",
            ("names of the days of the week", "numbers written as words", "words about money"), in_set(TIME_WORDS)),
    planted("weather", "words about the weather",
            ("words about the ocean and water", "colour words", "emotions and feelings"), in_set(WEATHER)),
    planted("religion", "words about religion, God and the church",
            ("words about government and law", "words about death and funerals", "emotions and feelings"),
            in_set(RELIGION)),
    planted("computing", "words about computers and programming",
            ("words about science and mathematics", "words about machines and cars", "words about writing books"),
            in_set(COMPUTING)),
    planted("modals", "modal verbs such as can, would and must",
            ("personal pronouns", "negation words", "verbs in the past tense"), in_set(MODALS)),
    planted("pronouns", "third-person and plural personal pronouns such as he, she and they",
            ("articles such as the and a", "names of people", "modal verbs"), in_set(PRONOUNS)),
    planted("negation", "negation words such as not, no and never",
            ("question words such as why and how", "modal verbs", "the word and"), in_set(NEGATIONS)),
    planted("articles", "the articles the, a and an",
            ("prepositions such as in and on", "the first word of a sentence", "personal pronouns"),
            in_set(ARTICLES)),
    planted("prepositions", "prepositions such as in, on, with and from",
            ("articles such as the and a", "conjunctions such as and and but", "verbs of motion"),
            in_set(PREPOSITIONS)),
    planted("conjunctions", "conjunctions such as and, but, or and because",
            ("prepositions such as in and on", "commas and periods", "negation words"), in_set(CONJUNCTIONS)),
    planted("number_words", "numbers written as words, such as one, two and ten",
            ("digits", "ordinal words such as first and second", "names of the months"), in_set(NUMBER_WORDS)),
    planted("digits_continuing", "digits after the first digit of a number",
            ("the first digit of a number", "numbers written as words", "punctuation inside numbers"),
            digit_in_number),
    planted("question_marks", "question marks",
            ("exclamation marks", "periods at the end of a sentence", "question words such as why"),
            matching(r"\?+")),
    planted("exclamations", "exclamation marks",
            ("question marks", "words in capital letters", "periods at the end of a sentence"), matching(r"!+")),
    planted("closing_brackets", "closing brackets and parentheses",
            ("opening brackets and parentheses", "the text inside parentheses", "quotation marks"),
            matching(r"[^\w\s]*[)\]}][^\w\s]*")),
    planted("opening_brackets", "opening brackets and parentheses",
            ("closing brackets and parentheses", "the text inside parentheses", "commas"),
            matching(r"[^\w\s]*[(\[{][^\w\s]*")),
    planted("in_quotes", "words inside double quotation marks",
            ("the quotation marks themselves", "the word after a colon", "words in capital letters"),
            inside('"', '"')),
    planted("in_parentheses", "words inside parentheses",
            ("the parentheses themselves", "words inside quotation marks", "the last word of a line"),
            inside("(", ")")),
    planted("sentence_initial", "the first word of each sentence",
            ("the last word of each sentence", "capitalized names in the middle of a sentence", "articles"),
            sentence_initial),
    planted("names_mid_sentence", "capitalized words in the middle of a sentence, mostly names",
            ("the first word of each sentence", "words in all capital letters", "family members"),
            capitalized_mid_sentence),
    planted("second_name", "the second distinct name mentioned in a passage",
            ("the first name mentioned in a passage", "every capitalized word", "personal pronouns"), second_name),
    planted("after_the", "the word right after 'the'",
            ("the word 'the' itself", "the word right before 'the'", "nouns at the end of a sentence"),
            after({"the"})),
    planted("after_i", "the word right after 'I', mostly verbs",
            ("the word 'I' itself", "personal pronouns", "the first word of each sentence"), after({"i"})),
    planted("all_caps", "words written in all capital letters",
            ("capitalized names", "the first word of each sentence", "exclamation marks"),
            matching(r"[A-Z]{2,}")),
    planted("ing_words", "words ending in -ing",
            ("words ending in -ed", "words ending in -ly", "verbs after 'I'"), matching(r"[A-Za-z]{3,}ing")),
    planted("ly_words", "adverbs ending in -ly",
            ("words ending in -ing", "adjectives before a noun", "negation words"), matching(r"[A-Za-z]{2,}ly")),
    planted("repeated_word", "a word that already appeared earlier in the passage",
            ("the first time a word appears", "common words such as the and and", "the last word of a line"),
            repeated_word),
    planted("line_end", "the last token before a line break",
            ("the first word of a line", "periods and commas", "the line break itself"), line_end),
)


def planted_sha256() -> str:
    """Of the rules' names, descriptions and version: a changed rule set is a different feature source."""
    text = f"{RULES_VERSION}\n" + "\n".join(f"{f.name}|{f.description}|{'|'.join(f.false_descriptions)}"
                                            for f in PLANTED)
    return hashlib.sha256(text.encode()).hexdigest()


class PlantedSource(FeatureSource):
    """The planted features in place of a model's: the cache pass calls `read` on each batch of token ids
    and gets the rules' activations, so sampling, splits and statistics are the ones real features get.
    Registered as the feature source `planted` by the agent package (tools.feature_sources)."""

    not_in_model: ClassVar[str] = ("planted features are rules over tokens, not part of the model: they can be read "
                                   "on text (activations_on) but not ablated, steered, patched or traced to the logits")
    tokenizer: PreTrainedTokenizerBase
    memo: dict[int, str]
    """Token strings by id, decoded once."""

    @classmethod
    def over(cls, subject: SubjectModel) -> "PlantedSource":
        source = cls(HookPoint("planted", 0), "planted", len(PLANTED), None, None, planted_sha256())
        source.tokenizer = subject.tokenizer
        source.memo = {}
        return source

    def read(self, subject: SubjectModel, input_ids: torch.Tensor) -> torch.Tensor:
        values = []
        for ids in input_ids.tolist():
            tokens = token_strings(ids, self.tokenizer, self.memo)
            values.append([feature.activations(tokens) for feature in PLANTED])  # [F, seq]
        return torch.tensor(values, dtype=torch.float32, device=input_ids.device).permute(0, 2, 1)  # [B, seq, F]

    def features(self, acts: torch.Tensor) -> torch.Tensor:
        raise InterpError(self.not_in_model)

    @property
    def hook_name(self) -> str:
        return "planted"

    @property
    def name(self) -> str:
        return "planted"

    def hf_module(self, model) -> str:
        return ""

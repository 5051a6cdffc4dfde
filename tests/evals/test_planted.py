"""Planted features: every rule fires where it claims on hand-written token lists, and the planted set
caches and reads like a real feature set."""

import pytest

from evals.planted import PLANTED, planted_sha256

BY_NAME = {feature.name: feature for feature in PLANTED}


def tokens_of(text: str) -> list[str]:
    """A word-level tokenization like a BPE tokenizer's: a word carries its leading space, punctuation and
    line breaks are their own tokens, digits are one token each (as Gemma splits them)."""
    import re

    return re.findall(r"\n|\d| ?[A-Za-z']+| ?[^\w\s]+| ", text)


# (rule, text, the tokens it must fire on, in order). Each text also holds near misses it must not fire on.
CASES = [
    ("colours", "The red car and the big blue house", [" red", " blue"]),
    ("weekdays", "On Monday and Friday we met in May", [" Monday", " Friday"]),
    ("months", "In March or December, not Monday", [" March", " December"]),
    ("animals", "The cat chased a dog past the tree", [" cat", " dog"]),
    ("family", "My mother and brother saw a doctor", [" mother", " brother"]),
    ("body", "He raised his hand to his face and his hat", [" hand", " face"]),
    ("food", "Bread and cheese on a plate", ["Bread", " cheese"]),
    ("emotions", "Love and fear, not thought", ["Love", " fear"]),
    ("money", "They paid cash for the car", [" paid", " cash"]),
    ("time", "One morning after three years", [" morning", " years"]),
    ("weather", "The rain and wind on the sea", [" rain", " wind"]),
    ("religion", "God and the church and the state", ["God", " church"]),
    ("computing", "The computer ran the program on paper", [" computer", " program"]),
    ("modals", "You can go but you must stay", [" can", " must"]),
    ("pronouns", "She told them that I left", ["She", " them"]),
    ("negation", "It is not here and never was, now", [" not", " never"]),
    ("articles", "The cat saw an owl then", ["The", " an"]),
    ("prepositions", "She sat in the car with him", [" in", " with"]),
    ("conjunctions", "Tea and cake but no coffee", [" and", " but"]),
    ("number_words", "One day two men, first of all", ["One", " two"]),
    ("question_marks", "Why? Because! Really?", ["?", "?"]),
    ("exclamations", "Stop! Why? Go!", ["!", "!"]),
    ("closing_brackets", "f(x) and [y] or {", [")", "]"]),
    ("opening_brackets", "f(x) and [y] or }", ["(", " ["]),
    ("in_quotes", 'He said "go home" and left', ["go", " home"]),
    ("in_parentheses", "A note (see below) here", ["see", " below"]),
    ("sentence_initial", "Cats sleep. Dogs bark in the Sun", ["Cats", " Dogs"]),
    ("names_mid_sentence", "Then Alice met Bob and The end", [" Alice", " Bob"]),
    ("second_name", "Yes Alice met Bob and later Bob and Alice left", [" Bob", " Bob"]),
    ("after_the", "The cat saw the dog and a bird", [" cat", " dog"]),
    ("after_i", "Then I went and you said I know", [" went", " know"]),
    ("all_caps", "The NASA team and the FBI, I think", [" NASA", " FBI"]),
    ("ing_words", "Running and jumping, not ring", ["Running", " jumping"]),
    ("ly_words", "She quickly and quietly left, fly", [" quickly", " quietly"]),
    ("repeated_word", "Some words here and some other words", [" some", " words"]),
    ("line_end", "first line\nsecond one\n", [" line", " one"]),
]


def test_every_planted_feature_has_a_case_and_a_true_and_false_descriptions():
    assert sorted([name for name, _, _ in CASES] + ["digits_continuing"]) == sorted(BY_NAME)
    assert len(PLANTED) >= 30
    for feature in PLANTED:
        assert feature.description and 2 <= len(feature.false_descriptions) <= 3
        assert feature.description not in feature.false_descriptions


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[case[0] for case in CASES])
def test_each_rule_fires_exactly_where_it_claims(name, text, expected):
    tokens = tokens_of(text)
    values = BY_NAME[name].activations(tokens)
    assert len(values) == len(tokens)
    assert [token for token, value in zip(tokens, values, strict=True) if value > 0] == expected


def test_digits_continuing_grades_by_position_in_the_number():
    tokens = [" in", " ", "1", "9", "8", "4", " and", " ", "7", "."]
    values = BY_NAME["digits_continuing"].activations(tokens)
    assert values == [0, 0, 0, 0.75, 1.0, 1.0, 0, 0, 0, 0]


def test_the_rule_set_hash_changes_with_a_description(monkeypatch):
    import evals.planted as planted

    before = planted_sha256()
    changed = (planted.PLANTED[0].__class__("colours", "other", ("a", "b"), planted.PLANTED[0].rule),)
    monkeypatch.setattr(planted, "PLANTED", changed + planted.PLANTED[1:])
    assert planted.planted_sha256() != before

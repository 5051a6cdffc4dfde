"""Feature sources registered by name reach the cache pass without the tools importing who registered them."""

import pytest

import agent  # noqa: F401  (registers `planted`)
from tools.errors import InterpError
from tools.feature_sources import register_source, registered_names, registered_source
from tools.features import resolve_features
from tools.model.subject import load_subject_model


def test_the_agent_package_registers_the_planted_features():
    assert "planted" in registered_names()


def test_a_registered_name_resolves_to_its_source(tiny_models):
    subject = load_subject_model(str(tiny_models["gpt2"]), device="cpu")
    source = resolve_features("planted", "", subject)
    assert source.name == "planted" and source.not_in_model
    assert resolve_features("mlp.1", "", subject).not_in_model == ""


def test_a_name_cannot_be_taken_twice():
    factory = registered_source("planted")
    register_source("planted", factory)  # the same factory again is harmless
    with pytest.raises(InterpError, match="feature source 'planted' is already registered"):
        register_source("planted", lambda subject: None)

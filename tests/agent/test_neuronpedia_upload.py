"""`interp export --format neuronpedia-upload` and `interp publish neuronpedia`: bodies checked against the
upload-batch route's rules by our validator and by the loopback route's own transcription of them
(tools/testing/neuronpedia_server.py), then posted to that route as a real process, resumably."""

import copy
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.cli import main
from agent.neuronpedia.upload import BodyError, validate_body
from tests.agent.test_label import catalog  # noqa: F401  (fixture)
from tests.agent.test_neuronpedia import labeled  # noqa: F401  (fixture)
from tools.testing.neuronpedia_server import UploadBatch, thrown
from tools.testing.servers import neuronpedia_server

KEY = "np-test-key-5f1c"
ROUTE_ARGS = ("--source", "tiny-gpt20/1-res-test", "--method", "interp-agent_oneshot", "--model", "scripted")


def export(catalog_path: Path, out: Path, *extra: str) -> int:
    return main(["export", "resid_post.1", "--format", "neuronpedia-upload", "--out", str(out), "--np-source-id",
                 "1-res-test", "--device", "cpu", "--catalog", str(catalog_path), *extra])


def bodies(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("body-*.json"))]


def test_upload_bodies_hold_every_active_feature_within_the_routes_rules(labeled, tmp_path, capsys):  # noqa: F811
    assert export(labeled, tmp_path / "up") == 0
    out = capsys.readouterr().out
    written = bodies(tmp_path / "up")
    manifest = json.loads((tmp_path / "up" / "manifest.json").read_text())
    assert len(written) == len(manifest["bodies"]) == 1
    features = written[0]["features"]
    assert len(features) + len(manifest["never_active"]) == 64 and len(features) > 0
    assert f"{len(features)} features" in out
    for body in written:
        validate_body(body)
        batch = UploadBatch.model_validate(body)  # the route's own rules, transcribed separately
        assert thrown(batch, "tiny-gpt20/1-res-test", {"interp-agent_oneshot"}, {"scripted"}) == ""
    explained = [f for f in features if "explanations" in f]
    assert len(explained) == 3
    assert explained[0]["explanations"] == [{"text": "words about animals", "methodName": "interp-agent_oneshot",
                                             "modelName": "scripted"}]
    first = features[0]
    assert len(first["topLogits"]) == len(first["bottomLogits"]) == 20
    assert first["topLogits"][0]["value"] >= first["topLogits"][-1]["value"] > first["bottomLogits"][0]["value"]
    assert all(len(a["tokens"]) == len(a["values"]) for f in features for a in f["activations"])
    quantiles = [a for f in features for a in f["activations"] if "quantileMin" in a]
    assert quantiles and all(a["quantileMin"] <= max(a["values"]) + 1e-6 <= a["quantileMax"] + 1e-5
                             for a in quantiles)


def test_bodies_are_cut_by_count_and_the_limit_is_the_routes(labeled, tmp_path, capsys):  # noqa: F811
    assert export(labeled, tmp_path / "up", "--np-features-per-body", "16", "--no-logits") == 0
    written = bodies(tmp_path / "up")
    assert len(written) > 1 and all(len(body["features"]) <= 16 for body in written)
    assert all("topLogits" not in f for body in written for f in body["features"])
    assert export(labeled, tmp_path / "big", "--np-features-per-body", "129", "--no-logits") == 2
    assert "--np-features-per-body 129 must be in [1, 128]" in capsys.readouterr().err


def valid_body() -> dict:
    return {"modelId": "tiny-gpt20", "source": "1-res-test", "features": [
        {"index": 3, "density": 0.1, "topLogits": [{"token": "a", "value": 1.0}],
         "explanations": [{"text": "cats", "methodName": "interp-agent_oneshot", "modelName": "scripted"}],
         "activations": [{"tokens": ["a", "b"], "values": [0.0, 1.5]}]}]}


def mutate(path: str, value):
    def apply(body: dict) -> dict:
        body = copy.deepcopy(body)
        *parents, last = path.split("/")
        target = body
        for key in parents:
            target = target[int(key) if key.isdigit() else key]
        target[int(last) if last.isdigit() else last] = value(target) if callable(value) else value
        return body
    return apply


REFUSED = {
    "index as text": (mutate("features/0/index", "3"), "features[0].index"),
    "index too large": (mutate("features/0/index", 10_000_001), "features[0].index"),
    "density above 1": (mutate("features/0/density", 1.5), "features[0].density"),
    "129 features": (lambda b: {**b, "features": [{**b["features"][0], "index": i} for i in range(129)]},
                     "features: must be a list of 1 to 128"),
    "no features": (mutate("features", []), "features: must be a list of 1 to 128"),
    "text of 513": (mutate("features/0/explanations/0/text", "x" * 513), "explanations[0].text"),
    "empty text": (mutate("features/0/explanations/0/text", ""), "explanations[0].text"),
    "21 top logits": (mutate("features/0/topLogits", [{"token": "a", "value": 1.0}] * 21), "topLogits"),
    "empty token": (mutate("features/0/activations/0/tokens", ["", "b"]), "tokens[0]"),
    "lengths differ": (mutate("features/0/activations/0/values", [1.0]), "1 values; they must match"),
    "no activations": (mutate("features/0/activations", []), "features[0].activations"),
    "1025 tokens": (mutate("features/0/activations/0", {"tokens": ["a"] * 1025, "values": [0.0] * 1025}),
                    "activations[0].tokens"),
    "fraction above 1": (mutate("features/0/activations/0/quantileFraction", 2), "quantileFraction"),
    "repeated index": (lambda b: {**b, "features": b["features"] * 2}, "appears twice"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_our_validator_and_the_routes_rules_refuse_the_same_bodies(case):
    change, message = REFUSED[case]
    validate_body(valid_body())
    body = change(valid_body())
    with pytest.raises(BodyError, match=message.replace("[", r"\[").replace("]", r"\]")) as refused:
        validate_body(body)
    assert "\n" not in str(refused.value)
    try:
        batch = UploadBatch.model_validate(body)
    except ValidationError:
        return
    assert thrown(batch, "tiny-gpt20/1-res-test", {"interp-agent_oneshot"}, {"scripted"}), case


def publish(folder: Path, url: str, *extra: str) -> int:
    return main(["publish", "neuronpedia", str(folder), "--url", url, *extra])


def test_publish_posts_every_body_once_resumes_and_never_writes_the_key(labeled, tmp_path, capsys,  # noqa: F811
                                                                      monkeypatch):
    assert export(labeled, tmp_path / "up", "--np-features-per-body", "16") == 0
    exported = bodies(tmp_path / "up")
    assert len(exported) >= 3
    record = tmp_path / "received.jsonl"
    monkeypatch.setenv("NEURONPEDIA_API_KEY", KEY)
    # The first body is accepted; the second meets 503 on both its attempts: the run stops, naming it.
    with neuronpedia_server(record, *ROUTE_ARGS, "--script", "0,503,503") as url:
        assert publish(tmp_path / "up", url, "--attempts", "2") == 2
        assert "did not accept body-00001.json after 2 attempts (last: 503" in capsys.readouterr().err
        assert publish(tmp_path / "up", url) == 0  # resumes: the first body is not posted again
        assert f"posted {len(exported) - 1} bodies" in capsys.readouterr().out
        assert publish(tmp_path / "up", url) == 0
        assert f"posted 0 bodies (0 features) to {url}; {len(exported)} accepted before" in capsys.readouterr().out
    received = [json.loads(line) for line in record.read_text().splitlines()]
    assert received == exported  # each body exactly once, in order
    for path in (tmp_path / "up").iterdir():
        assert KEY not in path.read_text()


def test_publish_refusals_are_one_line_and_post_nothing(labeled, tmp_path, capsys, monkeypatch):  # noqa: F811
    assert export(labeled, tmp_path / "up", "--no-logits") == 0
    record = tmp_path / "received.jsonl"
    monkeypatch.setenv("NEURONPEDIA_API_KEY", KEY)
    with neuronpedia_server(record, *ROUTE_ARGS) as url:
        monkeypatch.setenv("NEURONPEDIA_API_KEY", "wrong")
        assert publish(tmp_path / "up", url) == 2
        assert "refused the API key (401: Invalid API key)" in capsys.readouterr().err
        monkeypatch.delenv("NEURONPEDIA_API_KEY")
        assert publish(tmp_path / "up", url) == 2
        assert "environment variable NEURONPEDIA_API_KEY holds no API key" in capsys.readouterr().err
        monkeypatch.setenv("NEURONPEDIA_API_KEY", KEY)
        body = tmp_path / "up" / "body-00000.json"
        original = body.read_bytes()
        body.write_bytes(original.replace(b'"index": 0', b'"index": "0"', 1))
        assert publish(tmp_path / "up", url) == 2
        assert "changed since it was exported" in capsys.readouterr().err
        body.write_bytes(original)
    assert publish(tmp_path / "up", "http://example.org") == 2
    assert "plain HTTP to another host" in capsys.readouterr().err
    assert not record.exists()
    assert not (tmp_path / "up" / "published.jsonl").read_text()


def test_the_route_refuses_explanation_types_it_does_not_have(labeled, tmp_path, capsys, monkeypatch):  # noqa: F811
    assert export(labeled, tmp_path / "up", "--no-logits", "--np-method-name", "made-up") == 0
    monkeypatch.setenv("NEURONPEDIA_API_KEY", KEY)
    with neuronpedia_server(tmp_path / "received.jsonl", *ROUTE_ARGS) as url:
        assert publish(tmp_path / "up", url, "--attempts", "1") == 2
    assert "Invalid Explanation Method Names: made-up" in capsys.readouterr().err

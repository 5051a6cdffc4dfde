"""`interp label --ray`: two Ray actors label exactly what one process labels (same explanations, same scores),
an actor killed mid-feature loses only that feature, and model-side explainers are refused."""

import duckdb
import pytest

from agent.labeling.config import LabelConfig
from agent.labeling.pipeline import run_label
from tests.agent.test_label import catalog  # noqa: F401  (fixture)
from tools.errors import InterpError
from tools.testing.servers import stub_server

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    from tools.ray_workers import KILL_MARKER

    marker = tmp_path_factory.mktemp("ray") / "killed"
    marker.touch()  # no kill unless a test removes it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {KILL_MARKER: str(marker)}})
    yield marker
    ray.shutdown()


def labels(path) -> tuple[list, list]:
    with duckdb.connect(str(path), read_only=True) as con:
        explanations = con.execute("SELECT feature, explainer, llm, status, text, prompt_tokens, completion_tokens "
                                   "FROM explanations ORDER BY feature").fetchall()
        scores = con.execute("SELECT e.feature, s.scorer, s.metric, s.status, s.value, s.n, s.ci_low, s.ci_high "
                             "FROM scores s JOIN explanations e USING (explanation_id) ORDER BY 1, 2, 3").fetchall()
    return explanations, scores


def test_ray_actors_label_what_one_process_labels_even_when_one_dies(ray_cluster, catalog, tmp_path):  # noqa: F811
    import shutil

    from tools.ray_workers import RaySettings

    copies = [tmp_path / f"{name}.duckdb" for name in ("one", "ray", "killed")]
    for copy in copies:
        shutil.copy(catalog, copy)
    with stub_server() as url:
        config = LabelConfig(llm="openai:stub", base_url=url, scorers="detection,fuzzing,embedding", limit=6,
                             concurrency=4, device="cpu")
        single = run_label(config, "resid_post.1", copies[0], progress=False)
        distributed = run_label(config, "resid_post.1", copies[1], progress=False, ray=RaySettings("auto", 2))
        ray_cluster.unlink()  # the next actor to take a feature dies on it
        survived = run_label(config, "resid_post.1", copies[2], progress=False, ray=RaySettings("auto", 2))
    assert ray_cluster.exists()
    assert (single.labeled, distributed.labeled, survived.labeled) == (6, 6, 6)
    one = labels(copies[0])
    assert one[0] and one[1] and labels(copies[1]) == one and labels(copies[2]) == one


def test_model_side_labeling_is_refused_on_ray(catalog):  # noqa: F811
    from tools.ray_workers import RaySettings

    config = LabelConfig(llm="openai:stub", explainer="evidence", device="cpu")
    with pytest.raises(InterpError, match="--ray labels with LLM explainers and scorers; the evidence explainer"):
        run_label(config, "resid_post.1", catalog, progress=False, ray=RaySettings("auto", 2))

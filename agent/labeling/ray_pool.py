"""`interp label --ray`: features labeled by Ray actors, each holding its own LLM backends (an endpoint
client, or a local model on its own GPU) and scorers; the driver stays the one catalog writer.

`RayPool` takes the thread pool's place in `label_all`: it hands each feature's record to an actor and gives
back a `concurrent.futures.Future` of its outcome, so reading, resuming, batched writes, failure rows and token
accounting are the ones a single process has. An actor that dies mid-feature is restarted by Ray and the call
retried: only that feature is redone (its outcome depends on nothing but its record).

The actors need nothing of the driver's machine but the config: what the explainers and scorers read of the
catalog (the corpus's token counts for token-stats) travels with them. Explainers and scorers that run the
subject model (evidence, output explainers; intervention) are left to single-process runs.
"""

import math
from concurrent.futures import Future

from agent.labeling.backends import Backends, build_labeler
from agent.labeling.config import LabelConfig
from agent.labeling.explainers import OutputExplainer
from agent.labeling.rows import FeatureOutcome, label_feature
from agent.labeling.token_stats import CorpusCounts
from evals.records import FeatureRecord
from evals.scorers.base import Scorer
from tools.errors import InterpError
from tools.ray_workers import RaySettings, die_once_for_tests, start_ray, stop_workers

MODEL_SIDE = ("evidence", *OutputExplainer.MODES)


def check_ray_config(config: LabelConfig) -> None:
    if config.explainer in MODEL_SIDE or "intervention" in config.scorer_names():
        raise InterpError(f"--ray labels with LLM explainers and scorers; the {config.explainer} explainer and the "
                          "intervention scorer run the subject model, so label with them without --ray")


class LabelActor:
    """One Ray actor: its own backends, explainer and scorers, built once."""

    def __init__(self, config: LabelConfig, corpus: CorpusCounts | None):
        self.labeler = build_labeler(config, Backends(config), corpus=corpus)

    def label(self, record: FeatureRecord, set_id: str, run_id: str, previous: dict | None,
              scorer_names: list[str]) -> FeatureOutcome:
        die_once_for_tests()
        scorers = [scorer for scorer in self.labeler.scorers if scorer.name in scorer_names]
        return label_feature(self.labeler, record, set_id, run_id, previous, scorers)


class RayPool:
    """The thread pool's interface (`submit` returning a Future, a context manager) over Ray actors, each taking
    `concurrency / workers` features at once."""

    def __init__(self, config: LabelConfig, settings: RaySettings, corpus: CorpusCounts | None, concurrency: int):
        self.ray = start_ray(settings)
        per_actor = max(1, math.ceil(concurrency / settings.workers))
        actor = self.ray.remote(num_cpus=settings.threads, max_concurrency=per_actor, max_restarts=2,
                                max_task_retries=2)(LabelActor)
        self.actors = [actor.remote(config, corpus) for _ in range(settings.workers)]
        self.next = 0

    def submit(self, function, labeler, record: FeatureRecord, set_id: str, run_id: str, previous: dict | None,
               scorers: list[Scorer]) -> Future:
        """As `pool.submit(label_feature, ...)`: the actor runs its own labeler's `label_feature`."""
        if function is not label_feature:
            raise ValueError("RayPool runs label_feature only")
        actor = self.actors[self.next % len(self.actors)]
        self.next += 1
        return actor.label.remote(record, set_id, run_id, previous, [scorer.name for scorer in scorers]).future()

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc) -> None:
        stop_workers(self.actors)

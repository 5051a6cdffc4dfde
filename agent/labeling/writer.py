"""The label run's one catalog writer: finished features are embedded and committed in batches, and the
catalog is held open between batches for at most `HOLD_SECONDS`.

Per feature, committing alone cost more than it had to: opening the catalog costs ~25-35 ms of CPU
(DuckDB's start, and the schema check when the file is new to this process or someone else wrote it),
and the explanation embedder costs ~22 ms of CPU for one text against ~4.5 ms a text in a batch of 30.
So features that finish wait up to `WRITE_SECONDS` (or until `WRITE_BATCH` are waiting) and go in together:
one embedding pass, one transaction. A crash loses at most that second's features, which a rerun redoes.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from agent.labeling.rows import FeatureOutcome, embed_explanations
from evals.scorers.embedding import Embedder
from tools.catalog import Catalog
from tools.llm.interface import Usage

log = logging.getLogger(__name__)
WRITE_BATCH = 64
WRITE_SECONDS = 1.0
HOLD_SECONDS = 1.0
"""How long the catalog stays open across batches before it is closed for other processes."""
SHORTEST_TURN_SECONDS = 0.5
"""When another process waits for the catalog, the run lets it go once it has held it this long. Letting go at
once for every page cost the run 13% of its features a minute against 10 page reads a second (each
reopening is ~25-35 ms of CPU, and the run waits while the pages read); 0.5 s cost 7%, and a page waits
0.35 s at the median, 0.72 at p99 (python benchmarks/reader_wait.py --features 1000 --delay 0.2)."""
TURN_CHECK_SECONDS = 0.05
"""While the catalog is held, how often the run looks for another process waiting for it."""


@dataclass
class Totals:
    """What the features written so far add up to."""

    labeled: int = 0
    failed: int = 0
    usage: Usage = Usage()


class LabelWriter:
    def __init__(self, path: Path, embedder: Embedder, totals: Totals):
        self.path, self.embedder, self.totals = path, embedder, totals
        self.pending: list[FeatureOutcome] = []
        self._waiting_since = 0.0
        self._catalog: Catalog | None = None
        self._opened = 0.0

    def catalog(self) -> Catalog:
        """The catalog, opened if it is not (reads of the next features go through it too)."""
        if self._catalog is None:
            self._catalog, self._opened = Catalog(self.path), time.monotonic()
        return self._catalog

    def add(self, outcomes: list[FeatureOutcome]) -> None:
        if outcomes and not self.pending:
            self._waiting_since = time.monotonic()
        self.pending += outcomes

    def due(self) -> bool:
        return len(self.pending) >= WRITE_BATCH or (
            bool(self.pending) and time.monotonic() - self._waiting_since >= WRITE_SECONDS)

    def seconds_to_due(self) -> float:
        """How long the caller may wait for features before the pending ones are due or the catalog is to
        be let go."""
        now = time.monotonic()
        wait = WRITE_SECONDS if not self.pending else max(0.0, WRITE_SECONDS - (now - self._waiting_since))
        if self._catalog is not None:
            wait = min(wait, TURN_CHECK_SECONDS, max(0.0, HOLD_SECONDS - (now - self._opened)))
        return wait

    def flush(self) -> int:
        """Embeds and commits every pending feature in one transaction (each feature whole); returns how many."""
        outcomes, self.pending = self.pending, []
        if not outcomes:
            return 0
        embed_explanations(outcomes, self.embedder)
        self.catalog().record_labels([(outcome.explanation, outcome.scores) for outcome in outcomes])
        for outcome in outcomes:
            if outcome.explanation is not None and outcome.explanation["status"] == "failed":
                self.totals.failed += 1
            else:
                self.totals.labeled += 1
            self.totals.usage = self.totals.usage + outcome.usage
        return len(outcomes)

    def release_if_held(self) -> None:
        """Closes the catalog once it has been open `HOLD_SECONDS`, or `SHORTEST_TURN_SECONDS` when another
        process waits for it (tools/catalog/turns.py: the waiter is let in before the run reopens it). Not
        after every write when nobody waits: a reopening costs ~25-35 ms of CPU (DuckDB's start and the
        checkpoint at close), and against a fast endpoint writes come every second."""
        held = time.monotonic() - self._opened
        if self._catalog is not None and (held >= HOLD_SECONDS or (held >= SHORTEST_TURN_SECONDS
                                                                   and self._catalog.others_waiting())):
            self.close()

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def salvage(self) -> None:
        """On the way out of a failed or interrupted run: commits the features that finished, if it can."""
        try:
            self.flush()
        except Exception as error:  # the run is already failing; its own error is the one to report
            log.warning(f"could not save {len(self.pending)} finished features: {error}")
        finally:
            self.close()

"""The feature tables: models, feature sets, features, windows and examples (written by the cache pass in
one transaction with its run's end, so an interrupted run never leaves a set that looks finished), and
SAE evaluations."""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa

from tools.catalog.connection import insert_row, insert_table
from tools.catalog.runs import RunTables
from tools.defaults import RANDOM_MODEL_PREFIX
from tools.errors import InterpError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSetRows:
    """Everything one caching run adds, written in one transaction. Examples may come in chunks (a wide
    SAE's do), and the windows table then after them, as a function, since the chunks say which windows
    are kept."""

    feature_set: dict
    features: pa.Table
    windows: pa.Table | Callable[[], pa.Table]
    examples: pa.Table | Iterable[pa.Table]


def say_newest(hook: str, sets: list[dict]) -> None:
    """Once a process per hook and choice: pages and agents resolve the same shorthand again and again."""
    key = (hook, sets[0]["feature_set_id"])
    if key in _said:
        return
    _said.add(key)
    others = ", ".join(row["feature_set_id"] for row in sets[1:])
    log.info(f"{hook}: the newest of its {len(sets)} feature sets, {sets[0]['feature_set_id']} (cached "
             f"{sets[0]['created_at']:%Y-%m-%d %H:%M}); name another by its id: {others}")


_said: set[tuple[str, str]] = set()


class FeatureTables(RunTables):
    def record_model(self, model_row: dict) -> None:
        insert_row(self.con, "models", model_row, on_conflict="ON CONFLICT DO NOTHING")

    def finish_feature_set(self, run_id: str, tokens: int, rows: FeatureSetRows) -> int:
        """Writes the rows; returns how many examples."""
        n_examples = 0

        with self.transaction() as con:
            insert_row(con, "feature_sets", rows.feature_set)
            insert_table(con, "features", rows.features)
            for chunk in [rows.examples] if isinstance(rows.examples, pa.Table) else rows.examples:
                insert_table(con, "examples", chunk)
                n_examples += chunk.num_rows
            insert_table(con, "windows", rows.windows if isinstance(rows.windows, pa.Table) else rows.windows())
            con.execute("UPDATE runs SET model_id = ?, tokens = ? WHERE run_id = ?",
                        [rows.feature_set["model_id"], tokens, run_id])
            self.set_run_status(run_id, "complete")
        return n_examples

    def feature_sets(self) -> list[dict]:
        return self.all_rows(
            "SELECT f.feature_set_id, m.name AS model, f.hook, f.kind, f.n_features, f.tokens, f.n_windows, "
            "f.created_at, f.run_id FROM feature_sets f JOIN models m USING (model_id) ORDER BY f.created_at"
        )

    def feature_set(self, ref: str) -> dict:
        """A feature set by id, by a unique id prefix, or by hook name: the newest set of that hook (every set
        in the table is complete: its row is written with its run's end). A hook that names several sets
        says on the log which one it took, so following the docs after a second `interp cache` of the same
        hook works, and says so, rather than stopping at "ambiguous". A hook never names the cache of a
        random-model control (`interp eval control`) while a trained model's set of that hook exists, nor does an id
        prefix that one trained model's set shares with controls."""
        matches = self.all_rows(
            "SELECT f.*, m.name AS model FROM feature_sets f JOIN models m USING (model_id) "
            "WHERE f.feature_set_id = ? OR starts_with(f.feature_set_id, ?) OR f.hook = ? "
            "ORDER BY f.created_at DESC, f.feature_set_id",
            [ref, ref, ref],
        )
        exact = [m for m in matches if m["feature_set_id"] == ref]
        if exact:
            return exact[0]
        same_hook = [m for m in matches if m["hook"] == ref]
        trained = [m for m in same_hook if not m["model"].startswith(RANDOM_MODEL_PREFIX)]
        same_hook = trained or same_hook  # a random-model control is named by its id, never by its hook
        if same_hook:
            if len(same_hook) > 1:
                say_newest(ref, same_hook)
            return same_hook[0]
        if len(matches) == 1:
            return matches[0]
        trained_matches = [m for m in matches if not m["model"].startswith(RANDOM_MODEL_PREFIX)]
        if len(trained_matches) == 1:
            return trained_matches[0]
        known = ", ".join(row["feature_set_id"] for row in self.feature_sets()) or "none yet; run `interp cache`"
        if not matches:
            raise InterpError(f"no feature set '{ref}' in catalog '{self.path}'; known: {known}")
        candidates = ", ".join(m["feature_set_id"] for m in matches)
        raise InterpError(f"feature set '{ref}' is ambiguous; use one of: {candidates}")

    def feature(self, feature_set_id: str, feature: int) -> dict:
        row = self._one("SELECT * FROM features WHERE feature_set_id = ? AND feature = ?", [feature_set_id, feature])
        if row is None:
            count = self._value("SELECT count(*) FROM features WHERE feature_set_id = ?", [feature_set_id])
            raise InterpError(f"feature {feature} is not in feature set '{feature_set_id}' (features 0..{count - 1})")
        return row

    def feature_densities(self, feature_set_id: str, features: list[int]) -> dict[int, float]:
        """Each of these features' share of corpus tokens it fired on, for the graph page's density filter."""
        rows = self.con.execute("SELECT feature, density FROM features WHERE feature_set_id = ? AND "
                                "list_contains(?, feature)", [feature_set_id, features]).fetchall()
        return {feature: density for feature, density in rows if density is not None}

    def top_features(self, feature_set_id: str, order_by: str, limit: int) -> list[dict]:
        if order_by not in ("max_act", "density", "mean_act"):
            raise InterpError(f"cannot sort features by '{order_by}'; expected max_act, density or mean_act")
        return self.all_rows(
            f"SELECT feature, max_act, mean_act, density, window_density FROM features "
            f"WHERE feature_set_id = ? ORDER BY {order_by} DESC NULLS LAST, feature LIMIT ?",
            [feature_set_id, limit],
        )

    def examples(self, feature_set_id: str, feature: int, bucket: str | None = None,
                 split: str | None = None) -> list[dict]:
        """Examples with their window's tokens, ordered by bucket and rank."""
        return self.all_rows(
            "SELECT e.bucket, e.rank, e.quantile, e.split, e.window_id, e.max_act, e.acts, w.tokens, w.token_ids "
            "FROM examples e JOIN windows w USING (feature_set_id, window_id) "
            "WHERE e.feature_set_id = ? AND e.feature = ? "
            "AND (? IS NULL OR e.bucket = ?) AND (? IS NULL OR e.split = ?) "
            "ORDER BY e.bucket, e.rank",
            [feature_set_id, feature, bucket, bucket, split, split],
        )

    def examples_of(self, feature_set_id: str, features: list[int]) -> dict[int, list[dict]]:
        """`examples` of many features in one query (a labeling run reads the next features together): each
        feature's examples, with their window's tokens, ordered by bucket and rank; [] for one without any."""
        if not features:
            return {}
        table = self.con.sql(
            "SELECT e.feature, e.bucket, e.rank, e.quantile, e.split, e.window_id, e.max_act, e.acts, w.tokens, "
            "w.token_ids FROM examples e JOIN windows w USING (feature_set_id, window_id) "
            "WHERE e.feature_set_id = ? AND e.feature BETWEEN ? AND ? AND list_contains(?, e.feature) "
            "ORDER BY e.feature, e.bucket, e.rank",
            params=[feature_set_id, min(features), max(features), features]).to_arrow_table()
        grouped: dict[int, list[dict]] = {feature: [] for feature in features}
        for row in table.to_pylist():  # Arrow builds the Python rows in C++, several times faster than fetchall
            grouped[row.pop("feature")].append(row)
        return grouped

    def max_acts(self, feature_set_id: str, features: list[int]) -> dict[int, float | None]:
        """Each feature's maximum activation; InterpError naming the first feature the set lacks."""
        rows = self.con.execute(
            "SELECT feature, max_act FROM features WHERE feature_set_id = ? AND list_contains(?, feature)",
            [feature_set_id, features]).fetchall()
        found = dict(rows)
        for feature in features:
            if feature not in found:
                self.feature(feature_set_id, feature)  # raises, naming the set's range
        return found

    def record_sae_eval(self, row: dict) -> None:
        insert_row(self.con, "sae_evals", row)

    def feature_set_of_run(self, run_id: str) -> str:
        return self._value("SELECT feature_set_id FROM feature_sets WHERE run_id = ?", [run_id])

    def model(self, model_id: str) -> dict:
        row = self._one("SELECT * FROM models WHERE model_id = ?", [model_id])
        if row is None:
            raise InterpError(f"catalog '{self.path}' has no model {model_id}")
        return row

    def live_features(self, feature_set_id: str) -> list[int]:
        """Features that fired at least once on the cached corpus, in index order."""
        rows = self.con.execute(
            "SELECT feature FROM features WHERE feature_set_id = ? AND max_act > 0 ORDER BY feature",
            [feature_set_id]).fetchall()
        return [row[0] for row in rows]

    def random_windows(self, feature_set_id: str) -> list[tuple[list[int], list[str]]]:
        """(token ids, tokens) of the windows sampled uniformly as negatives: an unbiased corpus sample."""
        rows = self.con.execute(
            "SELECT token_ids, tokens FROM windows WHERE feature_set_id = ? AND window_id IN "
            "(SELECT DISTINCT window_id FROM examples WHERE feature_set_id = ? AND bucket = 'random')",
            [feature_set_id, feature_set_id]).fetchall()
        return [(row[0], row[1]) for row in rows]

"""The catalog reads behind the web pages and their JSON API: one SQL query a view, so a set of 100k+
features pages, sorts and filters in the database rather than in Python."""

import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from tools.catalog import Catalog
from tools.errors import InterpError

PAGE_SIZE = 100
SCORE_BINS = 20


class FeatureFilter(BaseModel, extra="forbid"):
    """A feature set page's query string: sorting, paging and filters, each checked (a bad value is a 422)."""

    sort: Literal["feature", "max_act", "density", "score"] = "feature"
    descending: bool = False
    page: int = Field(1, ge=1)
    max_act_min: float | None = None
    max_act_max: float | None = None
    density_min: float | None = None
    density_max: float | None = None
    explainer: str | None = Field(None, max_length=200)
    text: str | None = Field(None, max_length=200, description="text the explanation contains")
    metric: str | None = Field(None, max_length=200, description="'scorer metric', e.g. 'detection auroc'")
    score_min: float | None = None
    score_max: float | None = None
    labeled_only: bool = False


@dataclass(frozen=True)
class FeaturePage:
    rows: list[dict]
    total: int
    page: int
    pages: int


def feature_sets_overview(catalog: Catalog) -> list[dict]:
    """Every set with how many features are labeled and by which explainers."""
    labeled = {}
    if catalog.has_labels():
        for set_id, features, explainers in catalog.con.execute(
                "SELECT feature_set_id, count(DISTINCT feature), list(DISTINCT explainer ORDER BY explainer) "
                "FROM explanations WHERE status = 'ok' GROUP BY feature_set_id").fetchall():
            labeled[set_id] = (features, explainers)
    return [row | {"labeled": labeled.get(row["feature_set_id"], (0, []))[0],
                   "explainers": labeled.get(row["feature_set_id"], (0, []))[1]} for row in catalog.feature_sets()]


def recent_runs(catalog: Catalog, limit: int = 20) -> list[dict]:
    """The latest runs with their status and the LLM tokens their explanations and scores took."""
    if not catalog.has_labels():
        return catalog.all_rows("SELECT run_id, kind, status, started_at, finished_at, error, 0 AS prompt_tokens, "
                     "0 AS completion_tokens FROM runs ORDER BY started_at DESC LIMIT ?", [limit])
    spent = ("SELECT run_id, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion FROM {} "
             "GROUP BY run_id")
    return catalog.all_rows((
        "SELECT r.run_id, r.kind, r.status, r.started_at, r.finished_at, r.error, "
        "coalesce(e.prompt, 0) + coalesce(s.prompt, 0) AS prompt_tokens, "
        "coalesce(e.completion, 0) + coalesce(s.completion, 0) AS completion_tokens FROM runs r "
        f"LEFT JOIN ({spent.format('explanations')}) e USING (run_id) "
        f"LEFT JOIN ({spent.format('scores')}) s USING (run_id) ORDER BY r.started_at DESC LIMIT ?"), [limit])


def _split_metric(metric: str | None, known: list[str]) -> tuple[str, str] | None:
    if metric is None:
        return None
    if metric not in known:
        raise InterpError(f"no metric '{metric}' on this feature set; known: {', '.join(known) or 'none yet'}")
    scorer, name = metric.split(" ", 1)
    return scorer, name


def features_page(catalog: Catalog, set_id: str, query: FeatureFilter, known_metrics: list[str]) -> FeaturePage:
    """One page of a set's features, each with its latest explanation and, when a metric is chosen, that
    explanation's score; `known_metrics` are the set's (score_distributions names them)."""
    chosen = _split_metric(query.metric, known_metrics) if query.metric or query.sort == "score" else None
    if query.sort == "score" and chosen is None:
        raise InterpError("sorting by score needs a metric (e.g. metric=detection auroc)")
    has_labels = catalog.has_labels()

    def latest(of_page: bool) -> str:
        """Each feature's latest explanation (of the page's features only, when `of_page`)."""
        if not has_labels:
            return ("(SELECT NULL::INTEGER AS feature, NULL AS explanation_id, NULL AS text, NULL AS explainer "
                    "WHERE false)")
        return ("(SELECT feature, arg_max(explanation_id, created_at) AS explanation_id, arg_max(text, created_at) "
                "AS text, arg_max(explainer, created_at) AS explainer FROM explanations WHERE feature_set_id = $set "
                "AND status = 'ok' AND ($explainer IS NULL OR explainer = $explainer)"
                + (" AND feature IN (SELECT feature FROM page)" if of_page else "") + " GROUP BY feature)")

    score = ("(SELECT explanation_id, avg(value) AS score, avg(ci_low) AS ci_low, avg(ci_high) AS ci_high FROM scores "
             "WHERE scorer = $scorer AND metric = $metric AND status = 'ok' GROUP BY explanation_id)"
             if chosen and has_labels else
             "(SELECT NULL AS explanation_id, NULL::DOUBLE AS score, NULL::DOUBLE AS ci_low, NULL::DOUBLE AS ci_high "
             "WHERE false)")
    on_features: list[str] = ["f.feature_set_id = $set"]
    on_labels: list[str] = []
    conditions = (("max_act_min", "f.max_act >= $max_act_min", on_features),
                  ("max_act_max", "f.max_act <= $max_act_max", on_features),
                  ("density_min", "f.density >= $density_min", on_features),
                  ("density_max", "f.density <= $density_max", on_features),
                  ("text", "contains(lower(l.text), lower($text))", on_labels),
                  ("score_min", "s.score >= $score_min", on_labels), ("score_max", "s.score <= $score_max", on_labels))
    params: dict = {"set": set_id, "explainer": query.explainer}
    for name, condition, where in conditions:
        value = getattr(query, name)
        if value is not None:
            where.append(condition)
            params[name] = value
    if query.labeled_only or query.explainer:
        on_labels.append("l.text IS NOT NULL")
    if chosen:
        params["scorer"], params["metric"] = chosen
    order = {"feature": "f.feature", "max_act": "f.max_act", "density": "f.density", "score": "s.score"}[query.sort]
    direction = "DESC" if query.descending else "ASC"
    ordering = f"ORDER BY {order} {direction} NULLS LAST, f.feature"
    params |= {"limit": PAGE_SIZE, "offset": (query.page - 1) * PAGE_SIZE}
    if not on_labels and query.sort != "score":
        # The common view (no filter or sort on labels): page the features first, then read the labels of
        # those 100 only, instead of every explanation of a 100k-feature set.
        body = f"FROM features f WHERE {' AND '.join(on_features)}"
        sql = (f"WITH page AS (SELECT f.feature, f.max_act, f.density {body} {ordering} LIMIT $limit OFFSET $offset) "
               f"SELECT f.feature, f.max_act, f.density, l.text, l.explainer, s.score, s.ci_low, s.ci_high FROM page f "
               f"LEFT JOIN {latest(of_page=True)} l USING (feature) LEFT JOIN {score} s USING (explanation_id) "
               f"{ordering}")
    else:
        body = (f"FROM features f LEFT JOIN {latest(of_page=False)} l USING (feature) LEFT JOIN {score} s "
                f"USING (explanation_id) WHERE {' AND '.join(on_features + on_labels)}")
        sql = (f"SELECT f.feature, f.max_act, f.density, l.text, l.explainer, s.score, s.ci_low, s.ci_high {body} "
               f"{ordering} "
               "LIMIT $limit OFFSET $offset")
    count_params = {key: value for key, value in params.items() if f"${key}" in body}
    total = catalog.con.execute(f"SELECT count(*) {body}", count_params).fetchall()[0][0]
    pages = max(1, -(-total // PAGE_SIZE))
    table = catalog.con.sql(sql, params={key: value for key, value in params.items() if f"${key}" in sql})
    return FeaturePage(table.to_arrow_table().to_pylist(), total, query.page, pages)


def score_distributions(catalog: Catalog, set_id: str) -> dict[str, dict]:
    """Per metric: counts in SCORE_BINS equal bins over [0, 1] (AUROC, accuracy) or over its own range
    (correlations), of every usable score on this set; binned in the database, one pass over the scores."""
    out: dict[str, dict] = {}
    if not catalog.has_labels():
        return out
    rows = catalog.con.execute(
        "WITH scored AS (SELECT s.scorer || ' ' || s.metric AS metric, s.value FROM scores s "
        "  JOIN explanations e USING (explanation_id) WHERE e.feature_set_id = ? AND s.status = 'ok' "
        "  AND s.value IS NOT NULL AND isfinite(s.value)), "
        "ranges AS (SELECT metric, least(0.0, min(value)) AS start, greatest(1.0, max(value)) AS stop FROM scored "
        "  GROUP BY metric) "
        "SELECT metric, start, stop, least(?, floor((value - start) / ((stop - start) / ?)))::INTEGER AS bin, "
        "count(*) FROM scored JOIN ranges USING (metric) GROUP BY ALL ORDER BY metric, bin",
        [set_id, SCORE_BINS - 1, SCORE_BINS]).fetchall()
    for metric, start, stop, index, count in rows:
        entry = out.setdefault(metric, {"start": start, "stop": stop, "counts": [0] * SCORE_BINS, "n": 0})
        entry["counts"][index] += count
        entry["n"] += count
    return out


def feature_experiments(catalog: Catalog, set_id: str, feature: int, limit: int = 200) -> list[dict]:
    """Tool calls of investigations and questions about this feature: experiments of the runs whose
    explanations are of it, and of ask and mcp runs whose calls name it."""
    return catalog.all_rows(
        "SELECT x.run_id, r.kind, x.step, x.tool, x.arguments, x.ok, x.result, x.seconds FROM experiments x "
        "JOIN runs r USING (run_id) WHERE x.run_id IN ("
        "  SELECT run_id FROM explanations WHERE feature_set_id = ? AND feature = ? "
        "  UNION SELECT run_id FROM experiments WHERE try_cast(json_extract(arguments, '$.feature') AS INTEGER) = ?) "
        "AND (r.config->>'feature_set' IS NULL OR r.config->>'feature_set' = ?) "
        "ORDER BY r.started_at DESC, x.step LIMIT ?", [set_id, feature, feature, set_id, limit]) \
        if catalog.has_labels() else []


def audit_runs(catalog: Catalog) -> list[dict]:
    """Every audit run: its feature set, concepts and verdicts."""
    return catalog.all_rows("SELECT a.run_id, a.feature_set_id, min(a.created_at) AS created_at, "
                 "list(a.concept || ': ' || a.verdict ORDER BY a.concept) AS verdicts FROM audits a "
                 "GROUP BY a.run_id, a.feature_set_id ORDER BY created_at DESC", [])


def audit_run(catalog: Catalog, run_id: str) -> list[dict]:
    """One audit run's concepts, each with its candidates, from the catalog rows alone."""
    concepts = catalog.all_rows("SELECT * EXCLUDE (positive, negative), json_array_length(positive) AS n_positive, "
                     "json_array_length(negative) AS n_negative FROM audits WHERE run_id = ? ORDER BY concept",
                     [run_id])
    if not concepts:
        raise InterpError(f"no audit run '{run_id}' in the catalog")
    candidates = catalog.all_rows("SELECT * FROM audit_candidates WHERE run_id = ? ORDER BY concept, rank", [run_id])
    for concept in concepts:
        concept["candidates"] = [c for c in candidates if c["concept"] == concept["concept"]]
        concept["confounds"] = json.loads(concept["confounds"]) if concept["confounds"] else {}
        for candidate in concept["candidates"]:
            candidate["found_by"] = json.loads(candidate["found_by"])
    return concepts


def eval_tables(catalog: Catalog) -> list[dict]:
    """Every eval run's table (planted and compare), newest first."""
    rows = catalog.all_rows("SELECT run_id, eval, subject, metric, value, n, ci_low, ci_high, created_at FROM evals "
                 "ORDER BY created_at DESC, run_id, subject, metric", [])
    tables: dict[str, dict] = {}
    for row in rows:
        table = tables.setdefault(row["run_id"], {"run_id": row["run_id"], "eval": row["eval"],
                                                  "created_at": row["created_at"], "rows": []})
        table["rows"].append(row)
    return list(tables.values())

"""`interp audit SET CONCEPTS`: is each flagged concept represented in the model, and which
features carry it? Per concept: semantic search over the set's explanations; a probe and a
difference-of-means direction (held-out AUROC with an interval); the features most aligned with that
direction and most active on the concept's texts; a causal check of the top candidates (ablating them
should lower a last-layer readout of the concept, steering them should raise it); a verdict per
candidate with its evidence and confidence, and one on the concept. Everything is recorded in the
catalog (`audits`, `audit_candidates`) and written as a Markdown and a self-contained HTML report.

"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from agent.audit.concepts import Concept, load_concepts
from agent.audit.report import write_reports
from agent.audit.verdicts import SIGNIFICANCE, Candidate, ConceptAudit, candidate_verdict, concept_verdict
from agent.investigate.workbench import Workbench
from agent.labeling.backends import Backends
from agent.labeling.config import LabelConfig
from agent.labeling.search import nearest_explanations
from prompts import load_prompt
from tools.catalog import Catalog
from tools.errors import InterpError
from tools.llm.interface import ChatLLM, Usage

SEARCH_HITS = 3
ALIGNED = 3
ACTIVE = 3
MAX_CANDIDATES = 6
WRITTEN_TEXTS = 8


class TextWriter:
    """Has the LLM write a concept's missing examples, once; the catalog keeps them for exact reruns."""

    def __init__(self, backends: Backends, spec: str):
        self.backends, self.spec = backends, spec
        self.prompt = load_prompt("audit_texts")
        self.usage = Usage()

    @property
    def llm(self) -> ChatLLM:
        return self.backends.get(self.spec)

    def write(self, concept: Concept, positive: bool) -> list[str]:
        from agent.investigate.measure import list_items

        kind = "are clear examples of" if positive else "have nothing to do with"
        content = self.prompt.render(n=str(WRITTEN_TEXTS), kind=kind, description=concept.description)
        completion = self.llm.chat([{"role": "user", "content": content}], max_tokens=400)
        self.usage = self.usage + completion.usage
        texts = list_items(completion.text, limit=WRITTEN_TEXTS)
        if len(texts) < 3:
            side = "positive" if positive else "negative"
            raise InterpError(f"the LLM wrote {len(texts)} usable {side} texts for concept '{concept.name}'; give "
                              f"'{side}:' texts in the concepts file")
        return texts


def resolved_texts(concept: Concept, catalog_path: Path, writer: TextWriter) -> tuple[list[str], list[str], str]:
    """The file's texts, else the ones recorded for this concept by an earlier audit, else the LLM's."""
    if concept.positive is not None and concept.negative is not None:
        return list(concept.positive), list(concept.negative), "file"
    with Catalog(catalog_path, read_only=True) as catalog:
        earlier = catalog.audit_texts(concept.key)
    positive = list(concept.positive) if concept.positive is not None else (
        earlier["positive"] if earlier else writer.write(concept, True))
    negative = list(concept.negative) if concept.negative is not None else (
        earlier["negative"] if earlier else writer.write(concept, False))
    by = earlier["texts_by"] if earlier else writer.llm.name
    return positive, negative, by


def write_resolved_concepts(path: Path, audits: list[ConceptAudit]) -> None:
    """The concepts with every text the audit used, written or given: pass it back for an exact rerun."""
    import yaml

    entries = [{"name": a.concept.name, "description": a.concept.description, "positive": a.positive,
                "negative": a.negative} for a in audits]
    path.write_text(yaml.safe_dump({"concepts": entries}, allow_unicode=True, sort_keys=False), encoding="utf-8")


@dataclass
class AuditResult:
    run_id: str
    set_id: str
    feature_set: dict
    audits: list[ConceptAudit]
    report_md: Path
    report_html: Path


def check_inputs(config: LabelConfig, concepts_path: Path, set_ref: str, catalog_path: Path) -> tuple[list, dict]:
    config.validate()
    concepts = load_concepts(concepts_path)
    if not Path(catalog_path).exists():
        raise InterpError(f"no catalog at {catalog_path}; run `interp cache` and `interp label` first")
    with Catalog(catalog_path, read_only=True) as catalog:
        feature_set = catalog.feature_set(set_ref)
        set_id = feature_set["feature_set_id"]
        if feature_set["kind"] == "planted":
            raise InterpError(f"{set_id} holds planted features, which are not part of the model; audit a "
                              "model's neurons or SAE latents")
        if catalog.explanation_count(set_id) == 0:
            raise InterpError(f"feature set {set_id} has no explanations yet, so nothing to search; run "
                              f"`interp label {set_id}` first (e.g. --explainer token-stats for a quick pass)")
    return concepts, feature_set


def audit_concept(concept: Concept, positive: list[str], negative: list[str], texts_by: str, bench,
                  seed: int) -> ConceptAudit:
    from agent.audit.confounds import surface_confounds
    from agent.audit.signal import (
        Readout,
        causal_effect,
        chance_max_aurocs,
        direction_alignment,
        feature_aurocs,
        feature_peaks,
        held_out_aurocs,
        mean_difference,
        readout_gap,
        separation,
        smallest_p,
        split_halves,
    )
    from tools.experiments.probing import pooled_activations
    from tools.experiments.steering import steer_strength

    subject, source = bench.subject_and_source
    texts = positive + negative
    labels = np.array([1] * len(positive) + [0] * len(negative))
    x = pooled_activations(subject, source, texts)
    probe = separation(x, labels, "probe", seed)
    mean_diff = separation(x, labels, "mean-difference", seed)
    peaks = feature_peaks(subject, source, texts)  # [texts, features]
    aurocs = feature_aurocs(peaks, labels)
    chance = chance_max_aurocs(peaks, labels, seed=seed)
    chance_auroc = float(np.quantile(chance, 1 - SIGNIFICANCE))
    # Candidates are chosen on one half and confirmed on the other, so choosing cannot inflate the evidence.
    choose, confirm = split_halves(labels, seed)
    alignment = direction_alignment(source, x[choose], mean_difference(x[choose], labels[choose]))
    chosen_aurocs = feature_aurocs(peaks[choose], labels[choose])

    hits: dict[int, dict] = {}
    for row in nearest_explanations(bench.catalog_path, bench.embedder, f"{concept.name}: {concept.description}",
                                    40, bench.set_id):
        if row["feature"] not in hits and len(hits) < SEARCH_HITS:
            hits[row["feature"]] = row
    ranked = {"search": list(hits), "aligned": [int(f) for f in np.argsort(-alignment)[:ALIGNED]],
              "active": [int(f) for f in np.argsort(-chosen_aurocs)[:ACTIVE]]}
    found: dict[int, list[str]] = {}
    # Round robin over the three lists, so each kind of evidence puts its best in before the cut.
    for rank in range(max(SEARCH_HITS, ALIGNED, ACTIVE)):
        for how, features in ranked.items():
            if rank < len(features):
                found.setdefault(features[rank], []).append(how)
    chosen = list(found)[:MAX_CANDIDATES]
    held_aurocs, held_p = held_out_aurocs(peaks[confirm][:, chosen], labels[confirm], seed=seed)

    labels_by_feature = bench.explanations()
    confirm_pos = [texts[i] for i in confirm if labels[i] == 1]
    confirm_neg = [texts[i] for i in confirm if labels[i] == 0]
    readout = Readout.fit(subject, [texts[i] for i in choose if labels[i] == 1],
                          [texts[i] for i in choose if labels[i] == 0])
    gap = readout_gap(readout.scores(subject, confirm_pos), readout.scores(subject, confirm_neg), seed)
    candidates = []
    for index, feature in enumerate(chosen):
        by = found[feature]
        hit, label = hits.get(feature), labels_by_feature.get(feature, {"text": None, "scores": {}})
        candidate = Candidate(feature, by, hit["text"] if hit else label["text"], label["scores"],
                              hit["similarity"] if hit else None, float(aurocs[feature]), float(alignment[feature]),
                              float((chance >= aurocs[feature]).mean()), float(held_aurocs[index]),
                              float(held_p[index]))
        record = bench.record(feature)
        if gap.significant:  # a share of a gap that is noise is not an effect
            effect = causal_effect(subject, source, feature, readout, confirm_pos, confirm_neg,
                                   steer_strength(record.max_act), seed)
            candidate.ablation, candidate.steering = effect.ablation, effect.steering
            candidate.ablation_ci, candidate.steering_ci = effect.ablation_ci, effect.steering_ci
        candidate.verdict, candidate.confidence = candidate_verdict(candidate, chance_auroc)
        candidate.top_examples = [{"tokens": r.tokens, "values": r.values} for r in record.explain_top[:3]]
        candidates.append(candidate)
    candidates.sort(key=lambda c: (-c.confidence, -c.activation_auroc))
    audit = ConceptAudit(concept, positive, negative, texts_by, probe, mean_diff, concept_verdict(probe), candidates,
                         chance_auroc, len(choose), len(confirm), smallest_p(labels[confirm]), gap,
                         surface_confounds(positive, negative))
    for candidate in candidates:
        audit.positive_peaks[candidate.feature] = peaks[labels == 1, candidate.feature].tolist()
        audit.negative_peaks[candidate.feature] = peaks[labels == 0, candidate.feature].tolist()
    return audit


def audit_rows(run_id: str, set_id: str, audit: ConceptAudit) -> tuple[dict, list[dict]]:
    concept = audit.concept
    row = {"run_id": run_id, "feature_set_id": set_id, "concept": concept.name, "concept_key": concept.key,
           "description": concept.description, "positive": json.dumps(audit.positive),
           "negative": json.dumps(audit.negative), "texts_by": audit.texts_by,
           "probe_auroc": audit.probe.auroc, "probe_ci_low": audit.probe.ci_low,
           "probe_ci_high": audit.probe.ci_high, "probe_p_value": audit.probe.p_value,
           "mean_diff_auroc": audit.mean_difference.auroc,
           "mean_diff_ci_low": audit.mean_difference.ci_low, "mean_diff_ci_high": audit.mean_difference.ci_high,
           "n_texts": audit.probe.n, "verdict": audit.verdict, "chance_auroc": audit.chance_auroc,
           "n_choose": audit.n_choose, "n_confirm": audit.n_confirm, "confounds": json.dumps(audit.confounds)}
    if audit.gap is not None:
        row |= {"readout_gap": audit.gap.value, "readout_gap_ci_low": audit.gap.ci_low,
                "readout_gap_ci_high": audit.gap.ci_high, "readout_gap_p": audit.gap.p_value}
    candidates = [{"run_id": run_id, "feature_set_id": set_id, "concept": concept.name, "rank": rank,
                   "feature": c.feature, "found_by": json.dumps(c.found_by), "explanation": c.explanation,
                   "explanation_scores": json.dumps(c.explanation_scores),
                   "similarity": c.similarity, "activation_auroc": c.activation_auroc, "alignment": c.alignment,
                   "ablation": c.ablation, "steering": c.steering, "confidence": c.confidence, "verdict": c.verdict,
                   "family_p": c.family_p, "held_out_auroc": c.held_out_auroc, "held_out_p": c.held_out_p,
                   "ablation_ci_low": (c.ablation_ci or (None, None))[0],
                   "ablation_ci_high": (c.ablation_ci or (None, None))[1],
                   "steering_ci_low": (c.steering_ci or (None, None))[0],
                   "steering_ci_high": (c.steering_ci or (None, None))[1]}
                  for rank, c in enumerate(audit.candidates, 1)]
    return row, candidates


def run_audit(config: LabelConfig, concepts_path: Path, set_ref: str, catalog_path: Path, out: Path,
              seed: int = 0, llm_factory=None, on_concept=None, progress: bool = False) -> AuditResult:
    catalog_path = Path(catalog_path)
    concepts, feature_set = check_inputs(config, concepts_path, set_ref, catalog_path)
    bench = Workbench(catalog_path, feature_set["feature_set_id"], config.device, config.embedder)
    writer = TextWriter(Backends(config, llm_factory), config.llm)
    audits = []
    with Catalog.run(catalog_path, "audit", config.recorded() | {
            "concepts_file": str(Path(concepts_path).resolve()), "feature_set": bench.set_id, "seed": seed}) as run_id:
        for concept in tqdm(concepts, unit="concept", disable=not progress, desc="audit"):
            positive, negative, by = resolved_texts(concept, catalog_path, writer)
            audit = audit_concept(concept, positive, negative, by, bench, seed)
            row, candidates = audit_rows(run_id, bench.set_id, audit)
            with Catalog(catalog_path) as catalog:
                catalog.record_audit(row, candidates)
            audits.append(audit)
            if on_concept:
                on_concept(audit)
        md, html = write_reports(Path(out), run_id, feature_set, audits)
        write_resolved_concepts(Path(out) / "concepts.resolved.yaml", audits)
    return AuditResult(run_id, bench.set_id, feature_set, audits, md, html)

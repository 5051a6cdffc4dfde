"""The audit report, as Markdown and as one self-contained HTML file (inline CSS and SVG, no scripts, no
network): per concept its verdict and probe results, then each candidate feature with its explanation,
evidence, intervention effects, a histogram of its peaks on the concept's texts, and top examples with
the activating tokens highlighted. Every number is a column of the run's `audits` / `audit_candidates`
rows, and the report says which run."""

import html
import re
from pathlib import Path

from agent.audit.confounds import flagged
from agent.audit.verdicts import SIGNIFICANCE, Candidate, ConceptAudit
from evals.records import display_token
from tools.text import visible


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:+.0%}"


def effect(value: float | None, interval: tuple[float, float] | None) -> str:
    """A causal share with its interval, or why there is none."""
    if value is None:
        return "not measured"
    return percent(value) + (f" [{percent(interval[0])}, {percent(interval[1])}]" if interval else "")


def held_out(candidate: Candidate) -> str:
    return "n/a" if candidate.held_out_auroc is None else \
        f"{fmt(candidate.held_out_auroc)} (p {fmt(candidate.held_out_p, 3)})"


def findings(audit: ConceptAudit) -> list[str]:
    """The held-out evidence in plain sentences, the same for both reports: how candidates were confirmed,
    whether the readout's gap allowed causal effects, surface differences, and whether anything survived."""
    lines = [f"Candidates were chosen on {audit.n_choose} texts and confirmed on the other {audit.n_confirm}; "
             f"the best feature by chance reaches activation AUROC {fmt(audit.chance_auroc)} on all texts (95th "
             "percentile of the highest per-feature AUROC over 200 label permutations), the bar a candidate must "
             "pass, then AUROC at least 0.75 with p < 0.05 on the texts it was not chosen on."]
    if audit.smallest_p >= SIGNIFICANCE:
        lines.append(f"Too few texts to confirm anything: on {audit.n_confirm} held-out texts the smallest "
                     f"possible p is {fmt(audit.smallest_p, 3)}; give at least 4 positive and 4 negative texts a "
                     "half (8 a side), where it is 1/70.")
    gap = audit.gap
    if gap is not None:
        state = "significant, so causal effects were measured" if gap.significant else \
            "not significant, so no causal effect is reported (a share of a gap that is noise is not an effect)"
        lines.append(f"The last-layer readout, fitted on the choosing half, separates the held-out texts by "
                     f"{fmt(gap.value)} [{fmt(gap.ci_low)}, {fmt(gap.ci_high)}] (permutation p "
                     f"{fmt(gap.p_value, 3)}): {state}.")
    surface = flagged(audit.confounds)
    if surface:
        lines.append(f"Surface differences that alone separate the texts: {'; '.join(surface)}. A probe or feature "
                     "may be reading these rather than the concept.")
    else:
        farthest = max((max(value, 1 - value) for value in audit.confounds.values()), default=0.5)
        lines.append("No surface measure (length, words, punctuation, digits, capitals) separates the texts on its "
                     f"own (the farthest from chance: AUROC {fmt(farthest)} or its mirror).")
    if not any(c.verdict in ("carries the concept", "fires with the concept") for c in audit.candidates):
        lines.append("No feature survives: none is above the best-by-chance bar on all texts and confirmed on "
                     "the held-out half.")
    return lines


def label_scores(candidate: Candidate) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in sorted(candidate.explanation_scores.items())) or "-"


# ---------------------------------------------------------------------------------------------------------
# Markdown


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def markdown_text(text: str) -> str:
    """Untrusted text as one inert Markdown span: controls visible (a newline cannot end a table row), HTML
    escaped (no raw tags), and every character Markdown gives a meaning backslash-escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(visible(text), quote=False))


def html_text(text: str) -> str:
    """Untrusted text in the HTML report: controls visible, markup escaped."""
    return html.escape(visible(text))


def marked_example(example: dict) -> str:
    peak = max(example["values"], default=0.0)
    parts = []
    for token, value in zip(example["tokens"], example["values"], strict=True):
        shown = markdown_text(display_token(token))
        parts.append(f"**{shown}**" if peak > 0 and value >= 0.5 * peak and shown.strip() else shown)
    return "".join(parts)


def markdown_concept(audit: ConceptAudit) -> list[str]:
    probe, mean_diff = audit.probe, audit.mean_difference
    lines = [f"## {markdown_text(audit.concept.name)}: {audit.verdict}", "",
             f"_{markdown_text(audit.concept.description)}_", "",
             f"- probe (logistic regression, cross-validated): AUROC {fmt(probe.auroc)} "
             f"[{fmt(probe.ci_low)}, {fmt(probe.ci_high)}] on {probe.n} texts, "
             f"permutation p = {fmt(probe.p_value, 3)}",
             f"- difference of means: AUROC {fmt(mean_diff.auroc)} [{fmt(mean_diff.ci_low)}, {fmt(mean_diff.ci_high)}]",
             f"- texts: {len(audit.positive)} positive, {len(audit.negative)} negative, "
             f"from {markdown_text(audit.texts_by)}"]
    lines += [f"- {line}" for line in findings(audit)]
    lines += ["", "| rank | feature | verdict | confidence | activation AUROC | held-out AUROC | alignment | "
              "ablation | steering | found by | explanation | its scores |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rank, c in enumerate(audit.candidates, 1):
        explanation = markdown_text(c.explanation or "")
        lines.append(f"| {rank} | {c.feature} | {c.verdict} | {fmt(c.confidence)} | {fmt(c.activation_auroc)} | "
                     f"{held_out(c)} | {fmt(c.alignment)} | {effect(c.ablation, c.ablation_ci)} | "
                     f"{effect(c.steering, c.steering_ci)} | {', '.join(c.found_by)} | {explanation} | "
                     f"{label_scores(c)} |")
    for c in audit.candidates[:3]:
        lines += ["", f"Top examples of feature {c.feature}:", ""]
        lines += [f"- {marked_example(example)}" for example in c.top_examples]
    return lines + [""]


def markdown_report(run_id: str, feature_set: dict, audits: list[ConceptAudit]) -> str:
    lines = [f"# Audit of {feature_set['feature_set_id']}", "",
             f"{markdown_text(feature_set['model'])}, {feature_set['kind']} features at {feature_set['hook']}; "
             f"run `{run_id}` "
             "(catalog tables `audits` and `audit_candidates`).", "",
             "Ablation and steering are the change of a last-layer readout of the concept on held-out texts, as a "
             "share of its gap between positive and negative texts, with 95% bootstrap intervals. Activation "
             "AUROC: how well the feature's peak on a text tells the concept's texts apart (held-out: on the "
             "half of the texts the candidate was not chosen on).", ""]
    for audit in audits:
        lines += markdown_concept(audit)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# HTML with inline SVG


def svg_effect_bars(candidates: list[Candidate]) -> str:
    """Ablation and steering effect per candidate, as horizontal bars on a -100%..+100% scale."""
    row_height, width, label_width = 18, 420, 90
    height = row_height * 2 * max(len(candidates), 1) + 20
    middle = label_width + (width - label_width) / 2
    half = (width - label_width) / 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="intervention effects">',
             f'<line x1="{middle}" y1="0" x2="{middle}" y2="{height - 16}" stroke="#888"/>',
             f'<text x="{label_width}" y="{height - 4}" font-size="10">-100%</text>',
             f'<text x="{width - 34}" y="{height - 4}" font-size="10">+100%</text>']
    y = 0
    for c in candidates:
        for name, value, colour in (("ablate", c.ablation, "#c0392b"), ("steer", c.steering, "#2471a3")):
            shown = 0.0 if value is None or value != value else max(-1.0, min(1.0, value))
            x = middle if shown >= 0 else middle + shown * half
            parts.append(f'<text x="2" y="{y + 13}" font-size="11">{c.feature} {name}</text>')
            parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{abs(shown) * half:.1f}" height="{row_height - 6}" '
                         f'fill="{colour}"><title>{html.escape(percent(value))}</title></rect>')
            y += row_height
    return "".join(parts) + "</svg>"


def svg_histogram(positive: list[float], negative: list[float], bins: int = 12) -> str:
    """The feature's peak on each positive (orange) and negative (grey) text, binned."""
    values = positive + negative
    low, high = min(values, default=0.0), max(values, default=1.0)
    span = (high - low) or 1.0
    width, height, bar = 240, 70, 240 / bins

    def counts(group: list[float]) -> list[int]:
        out = [0] * bins
        for value in group:
            out[min(bins - 1, int((value - low) / span * bins))] += 1
        return out

    pos, neg = counts(positive), counts(negative)
    top = max(pos + neg + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14}" role="img" '
             'aria-label="activation histogram">']
    for index in range(bins):
        for offset, count, colour in ((0, neg[index], "#999"), (bar / 2, pos[index], "#e67e22")):
            h = count / top * height
            parts.append(f'<rect x="{index * bar + offset:.1f}" y="{height - h:.1f}" width="{bar / 2 - 1:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"/>')
    parts.append(f'<text x="0" y="{height + 12}" font-size="10">{low:.2g}</text>'
                 f'<text x="{width - 30}" y="{height + 12}" font-size="10">{high:.2g}</text>')
    return "".join(parts) + "</svg>"


def html_example(example: dict) -> str:
    peak = max(example["values"], default=0.0)
    spans = []
    for token, value in zip(example["tokens"], example["values"], strict=True):
        alpha = max(0.0, min(1.0, value / peak)) if peak > 0 else 0.0
        spans.append(f'<span style="background: rgba(230,126,34,{alpha:.2f})" title="{value:.3g}">'
                     f"{html_text(display_token(token))}</span>")
    return "<p class=example>" + "".join(spans) + "</p>"


def html_concept(audit: ConceptAudit) -> str:
    probe, mean_diff = audit.probe, audit.mean_difference
    rows = "".join(
        f"<tr><td>{rank}</td><td>{c.feature}</td><td>{html.escape(c.verdict)}</td><td>{fmt(c.confidence)}</td>"
        f"<td>{fmt(c.activation_auroc)}</td><td>{held_out(c)}</td><td>{fmt(c.alignment)}</td>"
        f"<td>{effect(c.ablation, c.ablation_ci)}</td><td>{effect(c.steering, c.steering_ci)}</td>"
        f"<td>{html.escape(', '.join(c.found_by))}</td>"
        f"<td>{html_text(c.explanation or '')}</td><td>{html.escape(label_scores(c))}</td></tr>"
        for rank, c in enumerate(audit.candidates, 1))
    details = "".join(
        f"<h4>feature {c.feature}: {html.escape(c.verdict)}</h4><div class=row><div>"
        f"{svg_histogram(audit.positive_peaks.get(c.feature, []), audit.negative_peaks.get(c.feature, []))}"
        f"<p class=note>peak per text: orange positive, grey negative</p></div><div>"
        + "".join(html_example(example) for example in c.top_examples) + "</div></div>"
        for c in audit.candidates[:3])
    return (f"<section><h2>{html_text(audit.concept.name)}: <span class=verdict>{html.escape(audit.verdict)}"
            f"</span></h2><p><i>{html_text(audit.concept.description)}</i></p>"
            f"<p>Probe AUROC {fmt(probe.auroc)} [{fmt(probe.ci_low)}, {fmt(probe.ci_high)}] on {probe.n} texts "
            f"(permutation p = {fmt(probe.p_value, 3)}); "
            f"difference of means {fmt(mean_diff.auroc)} [{fmt(mean_diff.ci_low)}, {fmt(mean_diff.ci_high)}]; "
            f"texts from {html_text(audit.texts_by)}.</p><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in findings(audit)) + "</ul>"
            "<table><tr><th>rank</th><th>feature</th><th>verdict</th><th>confidence</th><th>activation AUROC</th>"
            "<th>held-out AUROC</th><th>alignment</th><th>ablation</th><th>steering</th><th>found by</th>"
            "<th>explanation</th>"
            "<th>its scores</th></tr>"
            f"{rows}</table><h3>Intervention effects</h3>{svg_effect_bars(audit.candidates)}{details}</section>")


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
         ".example{font-family:monospace;font-size:12px;white-space:pre-wrap}.row{display:flex;gap:1em}"
         ".note{font-size:11px;color:#666}.verdict{color:#a04000}section{margin-bottom:3em}")


def html_report(run_id: str, feature_set: dict, audits: list[ConceptAudit]) -> str:
    body = "".join(html_concept(audit) for audit in audits)
    title = f"Audit of {feature_set['feature_set_id']}"
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{html_text(feature_set['model'])}, {html.escape(feature_set['kind'])} features at "
            f"{html.escape(feature_set['hook'])}; run <code>{run_id}</code> (catalog tables <code>audits</code> and "
            "<code>audit_candidates</code>). Ablation and steering: change of a last-layer readout of the concept on "
            "held-out texts as a share of its positive-negative gap, with 95% bootstrap intervals.</p>" + body
            + "</body></html>")


def write_reports(out: Path, run_id: str, feature_set: dict, audits: list[ConceptAudit]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "audit.md", out / "audit.html"
    md.write_text(markdown_report(run_id, feature_set, audits), encoding="utf-8")
    page.write_text(html_report(run_id, feature_set, audits), encoding="utf-8")
    return md, page

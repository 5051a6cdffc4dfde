"""What a feature makes the model say: its direct logit effect, and greedy continuations with the feature
turned up beside the model's own. The output-centric explainer shows these to the LLM (Gur-Arieh et al.
2025), and the intervention scorer asks a judge which continuation the feature shaped (Paulo et al.
2024): both need one calibration of "turned up" and one way to produce the pair.

The strength is calibrated to the feature's own scale: a multiple of its largest activation over the
corpus (capped), so a neuron that peaks at 0.3 and an SAE latent that peaks at 40 are both pushed well
past what they do naturally. The model is shared by every feature in flight, and steering swaps the
hooked module while it runs, so generation holds a lock.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass

from tools.experiments.interventions import add, generate, logit_tokens, require_in_model
from tools.features import FeatureSource
from tools.model.subject import SubjectModel

STEER_MULTIPLE = 10.0
"""Steering adds this many times the feature's corpus maximum: strong enough to show an effect."""
MAX_STRENGTH = 100.0
FALLBACK_STRENGTH = 8.0
"""For a feature that never fired on the corpus, so has no scale of its own."""
NEUTRAL_PROMPTS = ("The", "I think that", "Here is a short story:", "In the news today,")
"""Prompts that favour no topic, so what a steered continuation adds is the feature's."""
CONTINUATION_TOKENS = 12
CLEAN_CACHE = 1024


def steer_strength(max_act: float, sign: float = 1.0) -> float:
    return round(sign * min(MAX_STRENGTH, STEER_MULTIPLE * max_act if max_act > 0 else FALLBACK_STRENGTH), 2)


@dataclass(frozen=True)
class Continuation:
    prompt: str
    clean: str
    steered: str

    @property
    def changed(self) -> bool:
        return self.clean.strip() != self.steered.strip()


@dataclass(frozen=True)
class OutputEvidence:
    promoted: list[str]
    """Tokens the feature's direct logit effect raises most, strongest first."""
    suppressed: list[str]
    continuations: list[Continuation]
    strength: float


class Steerer:
    """Continuations with a feature steered, for one subject model and feature source."""

    def __init__(self, subject: SubjectModel, source: FeatureSource, max_new_tokens: int = CONTINUATION_TOKENS):
        require_in_model(source)  # planted features have no model to steer: one clear line
        self.subject, self.source = subject, source
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()
        self.clean: OrderedDict[str, str] = OrderedDict()
        """The model's own continuation of each prompt: the same for every feature, made once."""

    def continuations(self, feature: int, prompts: list[str], strength: float) -> list[Continuation]:
        with self.lock:
            return [Continuation(prompt, self._clean(prompt),
                                 generate(self.subject, prompt, self.max_new_tokens,
                                          edit=(self.source, feature, add(strength))))
                    for prompt in prompts]

    def _clean(self, prompt: str) -> str:
        if prompt not in self.clean:
            self.clean[prompt] = generate(self.subject, prompt, self.max_new_tokens)
            if len(self.clean) > CLEAN_CACHE:
                self.clean.popitem(last=False)
        return self.clean[prompt]

    def output_evidence(self, feature: int, max_act: float, n_tokens: int = 10) -> OutputEvidence:
        promoted, suppressed = logit_tokens(self.subject, self.source, feature, n_tokens)
        strength = steer_strength(max_act)
        return OutputEvidence(promoted, suppressed, self.continuations(feature, list(NEUTRAL_PROMPTS), strength),
                              strength)

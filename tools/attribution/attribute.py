"""Computing an attribution graph (tools/attribution/graph.py): which transcoder features, through which
others, make the model say what it says. Position 0 (BOS, the attention sink) has no feature or error nodes.

An edge's weight is the direct effect of its source on its target in the frozen replacement model
(tools/attribution/frozen.py): the source's output vector (a latent's activation times its decoder row, an
error vector, a token embedding) dotted with the gradient of the target's input (a latent's encoder row at
its MLP input, or a target's demeaned unembedding row at the last position). A row is one backward pass; a
batch of targets is one pass over that many copies of the prompt.

Features are visited in the order of their influence on the logits so far, re-ranked every `update_interval`
batches, so `max_features` keeps the ones that matter (circuit-tracer's algorithm).
"""

import logging
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from tools.attribution.frozen import Frozen, frozen_model
from tools.attribution.graph import Graph, Target
from tools.attribution.influence import logit_weights, partial_influence
from tools.errors import InterpError
from tools.model.subject import SubjectModel
from tools.sae.autoencoder import SAE

log = logging.getLogger(__name__)


@dataclass
class ActiveFeatures:
    """The latents active on the prompt, layer by layer, with the vectors their nodes inject and emit."""

    index: torch.Tensor  # [n, 3] (layer, position, latent)
    values: torch.Tensor  # [n]
    encoders: torch.Tensor  # [n, d_model]: the encoder row injected at mlp_in of its layer
    decoders: torch.Tensor  # [n, d_model]: activation x decoder row, what it writes to mlp_out
    errors: torch.Tensor  # [n_layers, seq, d_model]


def active_features(state: Frozen, transcoders: dict[int, SAE]) -> ActiveFeatures:
    index, values, encoders, decoders, errors = [], [], [], [], []
    for layer in sorted(transcoders):
        transcoder = transcoders[layer]
        inputs = state.inputs[layer][0].float()  # [seq, d]
        codes = transcoder.encode(inputs)
        codes[0] = 0  # BOS: no feature nodes at the attention sink
        positions, latents = codes.nonzero(as_tuple=True)
        value = codes[positions, latents]
        index.append(torch.stack([torch.full_like(positions, layer), positions, latents], dim=1))
        values.append(value)
        encoders.append(transcoder.W_enc[:, latents].T)
        decoders.append(transcoder.W_dec[latents] * value[:, None])
        error = state.outputs[layer][0].float() - transcoder.forward(inputs)
        error[0] = 0  # nor an error node
        errors.append(error)
    return ActiveFeatures(torch.cat(index), torch.cat(values), torch.cat(encoders), torch.cat(decoders),
                          torch.stack(errors))


def choose_targets(subject: SubjectModel, logits: torch.Tensor, names: list[str], versus: str | None,
                   max_targets: int, cover: float) -> list[Target]:
    """The named tokens (or one logit difference), else the top logits that cover `cover` of the probability,
    at most `max_targets`. Probabilities are the real model's; vectors are demeaned unembedding rows."""
    unembed = subject.model.get_output_embeddings().weight.float()  # [vocab, d]
    mean = unembed.mean(0)
    probabilities = torch.softmax(logits.float(), -1)
    ids: list[int] = [single_token(subject, name) for name in names]
    if versus is not None:
        if len(ids) != 1:
            raise InterpError(f"--versus '{versus}' compares with one --target; got {len(ids)} targets")
        other = single_token(subject, versus)
        return [Target(f"{names[0]} - {versus}", None, 1.0, unembed[ids[0]] - unembed[other])]
    if not ids:
        top = probabilities.topk(max_targets)
        covered = int(torch.searchsorted(top.values.cumsum(0), torch.tensor(cover, device=top.values.device))) + 1
        ids = top.indices[:min(covered, max_targets)].tolist()
    return [Target(decoded(subject, token), token, float(probabilities[token]), unembed[token] - mean) for token in ids]


def decoded(subject: SubjectModel, token: int) -> str:
    return str(subject.tokenizer.decode([token]))


def single_token(subject: SubjectModel, text: str) -> int:
    ids = subject.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InterpError(f"target '{text}' is {len(ids)} tokens ({ids}); a target is one token (mind the leading "
                          "space)")
    return int(ids[0])


class Rows:
    """Backward passes through one frozen forward of `batch` copies of the prompt."""

    def __init__(self, state: Frozen, final: torch.Tensor, features: ActiveFeatures, n_layers: int):
        self.state, self.final, self.features, self.n_layers = state, final, features, n_layers
        self.batch, self.n_positions = final.shape[0], final.shape[1]
        self.layer_of = features.index[:, 0]
        self.columns = len(features.values) + (n_layers + 1) * self.n_positions

    def compute(self, layers: list[int], positions: list[int], vectors: torch.Tensor) -> torch.Tensor:
        """[n, columns] direct effects on each injection (`layers[i]` is -1 for the final residual)."""
        n = len(layers)
        assert n <= self.batch
        objective = self.final.new_zeros(())
        for layer in sorted(set(layers)):
            rows = [i for i in range(n) if layers[i] == layer]
            where = self.final if layer < 0 else self.state.inputs[layer]
            picked = where[torch.tensor(rows), torch.tensor([positions[i] for i in rows])]  # [r, d]
            objective = objective + (picked.float() * vectors[rows]).sum()
        top = self.n_layers if min(layers) < 0 else max(layers)
        assert self.state.embedding_leaf is not None and self.state.embedding is not None
        sources = [self.state.outputs[layer] for layer in range(top)] + [self.state.embedding_leaf]
        grads = torch.autograd.grad(objective, sources, retain_graph=True, allow_unused=True)
        out = torch.zeros(n, self.columns, device=self.final.device)
        offset = len(self.features.values)
        for layer, grad in enumerate(grads[:-1]):
            if grad is None:
                continue
            grad = grad[:n].float()
            mine = (self.layer_of == layer).nonzero(as_tuple=True)[0]
            if len(mine):
                positions_here = self.features.index[mine, 1]
                out[:, mine] = torch.einsum("bnd,nd->bn", grad[:, positions_here], self.features.decoders[mine])
            start = offset + layer * self.n_positions
            out[:, start:start + self.n_positions] = torch.einsum("bsd,sd->bs", grad, self.features.errors[layer])
        if grads[-1] is not None:
            start = offset + self.n_layers * self.n_positions
            out[:, start:start + self.n_positions] = torch.einsum("bsd,sd->bs", grads[-1][:n].float(),
                                                                  self.state.embedding[0].float())
        return out.cpu()  # the graph is assembled on the CPU: [features, columns] can outgrow a GPU's memory


def attribute(subject: SubjectModel, transcoders: dict[int, SAE], prompt: str, target_names: list[str] | None = None,
              versus: str | None = None, max_targets: int = 10, cover: float = 0.95, max_features: int = 0,
              batch_size: int = 32, update_interval: int = 4, progress: bool = False) -> Graph:
    """The attribution graph of `prompt`'s next token; `max_features` 0 visits every active latent."""
    from tools.experiments.interventions import encode_text

    started = time.perf_counter()
    model = subject.model
    input_ids = encode_text(subject, prompt)
    if input_ids.shape[1] < 2:
        raise InterpError(f"prompt '{prompt}' has no tokens after BOS; trace needs text to attribute")
    for transcoder in transcoders.values():
        transcoder.to(subject.device)
    with frozen_model(model, transcoders) as state:
        with torch.no_grad():  # the recording pass
            logits = model(input_ids=input_ids, use_cache=False).logits[0, -1]
            features = active_features(state, transcoders)
        targets = choose_targets(subject, logits, target_names or [], versus, max_targets, cover)
        n_layers, n_positions, n_active = len(transcoders), input_ids.shape[1], len(features.values)
        log.info(f"{n_active:,} active latents on {n_positions} tokens; {len(targets)} targets: "
                 f"{', '.join(t.label for t in targets)}")
        chosen = n_active if not max_features else min(max_features, n_active)
        state.recording = False
        batch = input_ids.expand(batch_size, -1)
        final = model.base_model(input_ids=batch, use_cache=False).last_hidden_state
        rows = Rows(state, final, features, n_layers)
        vectors = torch.stack([t.vector for t in targets]).to(subject.device)
        chunks = vectors.split(batch_size)  # each target read at the final residual (-1), last position
        logit_rows = torch.cat([rows.compute([-1] * len(chunk), [n_positions - 1] * len(chunk), chunk)
                                for chunk in chunks])
        feature_rows = torch.zeros(chosen, rows.columns)
        order = torch.full((chosen,), -1, dtype=torch.long)
        visited = torch.zeros(n_active, dtype=torch.bool)
        done = 0
        weights = torch.tensor([t.probability for t in targets])
        bar = tqdm(total=chosen, unit="feature", disable=not progress, desc="trace")
        while done < chosen:
            if chosen == n_active:
                pending = torch.arange(n_active)
            else:
                influence = partial_influence(torch.cat([feature_rows[:done], logit_rows]),
                                              torch.cat([order[:done], n_active + (n_layers + 1) * n_positions
                                                         + torch.arange(len(targets))]),
                                              logit_weights(weights, done, len(targets)), rows.columns)
                ranked = influence[:n_active].argsort(descending=True)
                pending = ranked[~visited[ranked]][:min(update_interval * batch_size, chosen - done)]
            # Within a chunk, targets of the same layers share a pass: a pass backpropagates only below its top.
            pending = pending[features.index[pending, 0].cpu().argsort(stable=True)]
            for start in range(0, len(pending), batch_size):
                chunk = pending[start:start + batch_size]
                feature_rows[done:done + len(chunk)] = rows.compute(
                    features.index[chunk, 0].tolist(), features.index[chunk, 1].tolist(), features.encoders[chunk])
                order[done:done + len(chunk)] = chunk
                visited[chunk] = True
                done += len(chunk)
                bar.update(len(chunk))
        bar.close()
    selected = order.sort()
    keep = selected.values  # active indices of the chosen features, in node order
    fixed = torch.arange(n_active, rows.columns)
    columns = torch.cat([keep, fixed])
    n_nodes = len(keep) + (n_layers + 1) * n_positions + len(targets)
    adjacency = torch.zeros(n_nodes, n_nodes)
    adjacency[:len(keep), :len(columns)] = feature_rows[selected.indices][:, columns]
    adjacency[-len(targets):, :len(columns)] = logit_rows[:, columns]
    token_ids = input_ids[0].tolist()
    return Graph(prompt, token_ids, [decoded(subject, t) for t in token_ids], n_layers,
                 features.index.cpu()[keep], features.values.cpu()[keep], targets, adjacency, n_active,
                 time.perf_counter() - started)

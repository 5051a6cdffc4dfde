"""The linear floor of a map from one activation to another: ridge regression of y on [x, 1].

A transcoder's latents are worth keeping only where they beat this fit, so it is both the start of transcoder
training (its W_skip and b_dec) and a baseline row of the transcoder eval ("linear only").
"""

import torch

RIDGE = 1e-3
"""Relative ridge: lambda is this times the mean variance of x's dimensions. Enough to keep the solve well posed
when a few thousand tokens meet a wide d_in, too little to bias the fit measurably."""


def ridge_fit(x: torch.Tensor, y: torch.Tensor, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [d_in, d_out], b [d_out]) minimising ||y - x @ W - b||^2 + lambda ||W||^2; one d_in x d_in solve in
    float64, so the massive dimensions some models carry (Gemma's MLP outputs reach 10^3) cost no precision."""
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(dim=0), y.mean(dim=0)
    centred_x, centred_y = x - x_mean, y - y_mean
    gram = centred_x.T @ centred_x
    gram += ridge * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(len(gram), dtype=gram.dtype,
                                                                         device=gram.device)
    weight = torch.linalg.solve(gram, centred_x.T @ centred_y)
    return weight.float(), (y_mean - x_mean @ weight).float()

"""Linear Bradley-Terry heads on frozen features: a reward r(x) = w . f(x), so that
P(a preferred to b) = sigmoid(w . (f(a) - f(b))). Fitted by L-BFGS on the feature differences of
labelled pairs (ridge-penalised, on standardised features, no intercept: swapping a pair flips the
sign), in milliseconds, which makes k-fold and many-seed experiments cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class LinearHead:
    scale: np.ndarray  # per feature: divide differences by it (the training differences' std)
    weights: np.ndarray

    def margins(self, differences: np.ndarray) -> np.ndarray:
        """reward(a) - reward(b) for rows of f(a) - f(b)."""
        return (differences / self.scale) @ self.weights


def fit_head(differences: np.ndarray, a_preferred: np.ndarray, l2: float, sample_weight: np.ndarray | None = None
             ) -> LinearHead:
    """Fit on rows of f(a) - f(b) with a_preferred in {0, 1}. Differences are scaled, not centred:
    the model must stay antisymmetric (a pair and its swap get opposite margins)."""
    scale = np.sqrt((differences ** 2).mean(axis=0)) + 1e-6
    x = torch.tensor(differences / scale, dtype=torch.float64)
    y = torch.tensor(a_preferred, dtype=torch.float64)
    weight = torch.tensor(sample_weight if sample_weight is not None else np.ones(len(y)), dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=300, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = (torch.nn.functional.binary_cross_entropy_with_logits(x @ w, y, reduction="none") * weight).mean()
        value = value + l2 * (w ** 2).sum()  # ridge
        value.backward()
        return value

    optimizer.step(loss)
    return LinearHead(scale, w.detach().numpy())


def out_of_fold_margins(differences: np.ndarray, a_preferred: np.ndarray, folds: int, repeats: int, seed: int,
                        l2: float) -> np.ndarray:
    """Each pair's margin from heads that never saw it: `folds` heads per repeat, each fitted on
    the other folds; the mean over `repeats` seeded fold assignments."""
    n = len(a_preferred)
    total = np.zeros(n)
    for repeat in range(repeats):
        assignment = np.random.default_rng([seed, repeat]).permutation(n) % folds
        for fold in range(folds):
            held_out = assignment == fold
            head = fit_head(differences[~held_out], a_preferred[~held_out], l2)
            total[held_out] += head.margins(differences[held_out])
    return total / repeats

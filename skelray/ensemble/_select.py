"""Greedy forward selection with replacement (Caruana et al., 2004) under a size budget.

Each round adds the candidate that most improves the ensemble's validation top-1 (ties:
lower validation cross-entropy), a candidate may be added again (that raises its weight),
and the best ensemble seen after any round is kept. Weights are the pick counts over the
number of rounds kept. The first round picks the best single candidate, so the result is
never worse on validation than the best candidate that fits the budget.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from skelray.ensemble._candidates import Candidate
from skelray.ensemble.combine import nll, top1, weighted_logits


@dataclass
class Budget:
    params: float | None = None  # total parameters of the distinct members
    latency_ms: float | None = None  # summed batch-1 latency of the distinct members
    max_members: int | None = None  # distinct members

    def cost(self, members: list[Candidate]) -> tuple[float, float]:
        return sum(c.params for c in members), sum(c.latency_ms for c in members)

    def fits(self, members: list[Candidate]) -> bool:
        params, ms = self.cost(members)
        if self.params is not None and params > self.params:
            return False
        if self.latency_ms is not None and ms > self.latency_ms:
            return False
        return self.max_members is None or len(members) <= self.max_members


@dataclass
class Selection:
    counts: dict[int, int]  # candidate index -> times picked, for the kept ensemble
    val_top1: float
    val_nll: float
    trace: list[tuple[str, float]] = field(default_factory=list)  # (picked key, val top-1) per round

    def weights(self) -> dict[int, float]:
        total = sum(self.counts.values())
        return {i: n / total for i, n in self.counts.items()}


def _score(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    return top1(logits, labels), -nll(logits, labels)


def greedy_select(cands: list[Candidate], budget: Budget, *, rounds: int | None = None) -> Selection | None:
    """The best ensemble found, or None when no candidate fits the budget on its own."""
    labels = cands[0].val_labels
    val = [c.val_logits.astype(np.float64) for c in cands]
    rounds = rounds if rounds is not None else min(100, max(10, 3 * len(cands)))
    counts: Counter[int] = Counter()
    total = np.zeros_like(val[0])
    best: Selection | None = None
    trace: list[tuple[str, float]] = []
    for r in range(rounds):
        step: tuple[tuple[float, float], int] | None = None
        for i in range(len(cands)):
            if i not in counts and not budget.fits([cands[j] for j in counts] + [cands[i]]):
                continue
            score = _score((total + val[i]) / (r + 1), labels)
            if step is None or score > step[0]:
                step = (score, i)
        if step is None:
            break
        score, i = step
        counts[i] += 1
        total += val[i]
        trace.append((cands[i].key, score[0]))
        # Strictly better only: on a tie the earlier, smaller ensemble stays.
        if best is None or score > (best.val_top1, -best.val_nll):
            best = Selection(dict(counts), score[0], -score[1])
    if best is not None:
        best.trace = trace
    return best


def refine_weights(cands: list[Candidate], weights: dict[int, float], *, steps: int = 50) -> dict[int, float]:
    """Fit the members' weights to the validation logits (cross-entropy, weights on the simplex),
    starting from the pick-count weights. Kept only if validation top-1 does not drop: with
    few validation clips a lower loss can still mean a worse classifier."""
    import torch

    idx = sorted(weights)
    if len(idx) < 2:
        return weights
    x = torch.tensor(np.stack([cands[i].val_logits for i in idx]), dtype=torch.float64)
    y = torch.as_tensor(cands[0].val_labels, dtype=torch.int64)
    theta = torch.tensor([np.log(weights[i]) for i in idx], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        w = torch.softmax(theta, 0)
        loss = torch.nn.functional.cross_entropy((w[:, None, None] * x).sum(0), y)
        loss.backward()
        return loss

    opt.step(closure)
    fitted = torch.softmax(theta.detach(), 0).numpy()
    new = {i: float(w) for i, w in zip(idx, fitted)}
    labels = cands[0].val_labels

    def acc(ws: dict[int, float]) -> float:
        return top1(weighted_logits([cands[i].val_logits for i in idx], [ws[i] for i in idx]), labels)

    return new if acc(new) >= acc(weights) else weights

"""Evidence that respects sparse subjects: tail probabilities of counts of independent draws.

The ratio detectors (model mix, cache hits, context size) count *sessions*, not requests:
a session keeps one model and one prompt prefix, so its requests are one draw, not many.
These helpers turn "k of the last m sessions did X, where each was expected to with
probability p_j" into a probability, so a key with ten sessions a day needs the same
strength of evidence as one with a thousand -- it just takes longer to gather it.

>>> round(binomial_tail(3, [0.05] * 3), 6)        # 3 of 3 sessions at a 5% habit
0.000125
>>> binomial_tail(0, [0.5, 0.5]), binomial_tail(3, [0.5, 0.5])
(1.0, 0.0)
>>> round(normal_tail(3.0), 5)
0.00135
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def binomial_tail(k: int, probabilities: Sequence[float]) -> float:
    """P(at least ``k`` successes) among independent draws with these success probabilities.

    The Poisson-binomial distribution, computed exactly (O(n k)): each draw may have its
    own probability (a team's sessions, each against its own key's habit).

    >>> round(binomial_tail(2, [0.1, 0.2, 0.5]), 4)   # 1 - P(0) - P(1)
    0.15
    """
    if k <= 0:
        return 1.0
    if k > len(probabilities):
        return 0.0
    # below[j] = P(exactly j successes so far) for j < k; the mass at >= k is what we want
    below = [1.0] + [0.0] * (k - 1)
    at_least = 0.0
    for p in probabilities:
        q = 1.0 - p
        at_least += below[k - 1] * p
        for j in range(k - 1, 0, -1):
            below[j] = below[j] * q + below[j - 1] * p
        below[0] *= q
    return min(1.0, max(0.0, at_least))


def beta_binomial_tail(k: int, members: Sequence[tuple[int, float, float]]) -> float:
    """P(at least ``k`` successes) summed over members, each drawing ``n`` times with an unknown rate.

    Each member is ``(n, a, b)``: ``n`` draws whose success rate is Beta(``a``, ``b``) -- the
    member's own (decayed) history as pseudo-counts. Unlike a plug-in rate, this keeps the
    doubt of a short history: a key with 20 past sessions, none on a model, is not sure the
    model's share is 0, so two sessions on it are weak evidence; after 300 sessions they are
    strong. Computed exactly (beta-binomial per member, convolved, mass at ``k`` or more lumped).

    >>> round(beta_binomial_tail(2, [(2, 0.1, 20.0)]), 5)     # 2 of 2 after 20 sessions, none on it
    0.00026
    >>> round(beta_binomial_tail(2, [(2, 0.1, 300.0)]), 7)    # ... after 300 sessions
    1.2e-06
    >>> round(beta_binomial_tail(2, [(2, 5.0, 5.0)]), 4), round(binomial_tail(2, [0.5, 0.5]), 4)
    (0.2727, 0.25)
    >>> beta_binomial_tail(0, [(3, 1.0, 1.0)]), beta_binomial_tail(4, [(3, 1.0, 1.0)])
    (1.0, 0.0)
    """
    if k <= 0:
        return 1.0
    if k > sum(n for n, _, _ in members):
        return 0.0
    total = [1.0] + [0.0] * k  # total[j]: P(j successes so far), j < k; total[k]: P(k or more)
    for n, a, b in members:
        if n <= 0:
            continue
        # the member's beta-binomial pmf, by the ratio of consecutive terms from P(0)
        log_p0 = math.lgamma(b + n) + math.lgamma(a + b) - math.lgamma(a + b + n) - math.lgamma(b)
        pmf = [math.exp(log_p0)]
        for x in range(n):
            pmf.append(pmf[-1] * (n - x) / (x + 1) * (a + x) / (b + n - x - 1))
        new = [0.0] * (k + 1)
        for i, mass in enumerate(total):
            if mass == 0.0:
                continue
            if i == k:
                new[k] += mass
                continue
            for x, q in enumerate(pmf):
                new[min(k, i + x)] += mass * q
        total = new
    return min(1.0, max(0.0, total[k]))


def normal_tail(z: float) -> float:
    """P(Z >= z) for a standard normal Z.

    >>> normal_tail(0.0)
    0.5
    """
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def effective_count(weights: Sequence[float]) -> float:
    """Kish's effective number of independent units behind a weighted mean: (sum w)^2 / sum w^2.

    Ten sessions of equal weight count ten; one session carrying nearly all the weight
    counts about one, however many small ones ride along.

    >>> effective_count([1.0] * 10), round(effective_count([100.0, 1.0, 1.0]), 2)
    (10.0, 1.04)
    """
    total = sum(weights)
    squares = sum(w * w for w in weights)
    return total * total / squares if squares > 0 else 0.0

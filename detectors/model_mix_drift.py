"""model_mix_drift: a key's (or a whole team's) sessions moving to a model or price tier they seldom used.

Evidence is counted in **sessions**, not requests: a session keeps one model, so its 300
requests are one draw of "which model does this person pick", and one expensive session
alone is never drift (that is session_burn's business). A request without a session id
counts as a session of its own.

The detector keeps the subject's recent sessions (those started in the last
``recent_hours``, at most ``max_recent_sessions``) and, for every member of the subject
(its API keys: one for a key, each of a team's keys for a team), a baseline of how often
that member's sessions used each model and each tier, as exponentially decayed session
counts (``baseline_half_life_hours``) of the sessions that have left the recent set. For
each model and tier it asks: among the newest *m* sessions, *k* used it; if every session
had followed its own key's habit, how likely are *k* or more? The habit is what the key did
*before* those *m* sessions: its decayed baseline plus its recent sessions older than the
newest *m* (a sparse key's last day is a good part of what it is known to do). It is not
taken as a known rate but as a Beta distribution whose pseudo-counts are those sessions
(plus ``_PRIOR_SESSIONS`` at the subject's share), so the tail is a (sum of) beta-binomial(s):
a key with twenty past sessions, none on opus, is not sure its opus share is 0 and two opus
sessions are weak evidence; after a busy week of none they are strong. The smallest such tail
probability over *m*, Bonferroni-corrected for the *m* looked at, must be below
``significance`` shared among the subject's usual sessions a day: every new session is a
look, so a key with a thousand sessions a day holds each look to a thousandth of the day's
chance and one with five to a fifth -- a busy key is not paged by chance more often than a
sparse one, and a sparse key is not made to wait for evidence it takes days to gather. So a
key whose frontier share goes from 5% to 85% pages after a handful of sessions, one that
never used the model pages on its second session once its history is long enough to be sure
of that, while a key that always used it 40% of the time needs far more.

It also needs ``min_sessions`` drifted sessions making at least ``min_share`` of the
newest *m*, the newest *m* sessions' cost to be ``cost_per_request_factor`` x what their
requests cost at their own keys' usual price per request (a move to cheaper models is not a
page), a dollar floor -- the drifted sessions spent ``min_drift_spend_usd``, or a day at the
newest sessions' price per request would add ``min_extra_usd_per_day`` at the keys' usual
requests a day (a cheap busy key's first drifted sessions spend cents; its day does not) --
``min_baseline_sessions`` in the baseline and
``min_history_hours`` since the first request (new keys wait). At team scope, sessions of a
key with fewer than ``min_baseline_sessions`` of its own are left out (a new key is not
drift), and each key is judged against its own habit, so a team whose frontier-heavy key
happens to be the one awake is not drift either.

Tiers (``frontier``, ``standard``, ``economy``) come from the price table through
:func:`spendwatch.schemas.pricing.price_tier` -- no model list is hard-coded. Because the
baselines keep learning, a deliberate lasting switch becomes the new normal.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from spendwatch.detectors.base import MICROS, Context, Detector, Finding, Observation, micros_threshold, usd
from spendwatch.detectors.evidence import beta_binomial_tail
from spendwatch.detectors.rolling import DecayedSums
from spendwatch.schemas.pricing import TierThresholds, price_tier

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, ModelMixDriftConfig

_MAX_CATEGORIES = 48
_MAX_MEMBERS = 64
#: Members' shares are shrunk towards the subject's with the weight of this many sessions.
_PRIOR_SESSIONS = 2.0
#: A normal-approximation z below this cannot reach any sensible significance: skip the exact tail.
_MIN_Z = 2.0
#: far above the rounding a running sum over at most ``max_recent_sessions`` terms gathers, far below any real margin
_RUNNING_SUM_SLACK = 1e-6
_TIERS: dict[tuple[str, str | None, object, object], str] = {}

# a recent session: [start ts, member, model, tier, requests, micro-dollars]
_START, _MEMBER, _MODEL, _TIER, _REQUESTS, _COST = range(6)


def _habit(hits: float, total: float, subject_share: float) -> tuple[float, float]:
    """A member's Beta pseudo-counts for a category: its reference sessions plus the prior at the subject's share."""
    return (max(0.0, hits) + _PRIOR_SESSIONS * subject_share,
            max(0.0, total - hits) + _PRIOR_SESSIONS * (1.0 - subject_share))


def _tier(model: str, provider: str | None, tiers: TierThresholds) -> str:
    """:func:`price_tier`, memoised on plain values (hashing the pydantic thresholds per request is slow)."""
    key = (model, provider, tiers.frontier_min_input_per_mtok, tiers.economy_max_input_per_mtok)
    tier = _TIERS.get(key)
    if tier is None:
        if len(_TIERS) > 4096:
            _TIERS.clear()
        tier = _TIERS[key] = price_tier(model, provider, tiers)
    return tier


class ModelMixDrift(Detector):
    """The newest sessions' models and tiers against each member key's decayed session mix.

    Examples
    --------
    A developer who opens about six sessions an hour, 95% on claude-sonnet-4-5 and 5% on
    claude-opus-4-1, for two days; then 85% of their sessions go to opus. At some 140 sessions a day
    each look is held to 1e-3 / 140; three opus sessions in a row are far from that at a 5% habit
    (about 0.06^3 at best, times 3 looks); the seventh session is:

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, ModelMixDriftConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {"key_alias": "dev-ana"})
    >>> drift = ModelMixDrift(ModelMixDriftConfig(), BaselineConfig(), "key", "k1")
    >>> def session(ts, number, model, calls=8):
    ...     dollars = 0.40 if "opus" in model else 0.08
    ...     findings = []
    ...     for i in range(calls):
    ...         obs = Observation("request", ts + i * 60, cost=int(dollars * MICROS), model=model,
    ...                           provider="anthropic", session_id=f"s{number}", key_hash="k1")
    ...         drift.learn_one(obs, ctx)
    ...         findings = drift.score_one(ctx, obs.ts, obs)
    ...     return findings
    >>> t0 = 1_762_041_600.0
    >>> pages = [f for n in range(2 * 24 * 6)
    ...          for f in session(t0 + n * 600, n, "claude-opus-4-1" if n % 20 == 5 else "claude-sonnet-4-5")]
    >>> pages
    []
    >>> t1 = t0 + 2 * 86_400
    >>> for n in range(12):
    ...     findings = session(t1 + n * 600, 1000 + n, "claude-sonnet-4-5" if n % 7 == 3 else "claude-opus-4-1")
    ...     if findings:
    ...         break
    >>> n, findings[0].summary
    (6, 'key dev-ana: 6 of its last 7 sessions ($19.20) went to claude-opus-4-1 (frontier), against 5% of its sessions usually; cost per request 3.7x baseline')

    One expensive session on its own is never drift, however much it spends:

    >>> quiet = ModelMixDrift(ModelMixDriftConfig(), BaselineConfig(), "key", "k1")
    >>> drift = quiet
    >>> _ = [session(t0 + n * 600, n, "claude-sonnet-4-5") for n in range(2 * 24 * 6)]
    >>> session(t1, 5000, "claude-opus-4-1", calls=300)
    []
    """

    name = "model_mix_drift"
    config: ModelMixDriftConfig

    def __init__(self, config: ModelMixDriftConfig, baseline_config: BaselineConfig, scope: str,
                 subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.first_ts: float | None = None
        self.recent: dict[str, list[Any]] = {}  # session id -> recent session, oldest start first
        self.baseline = DecayedSums(config.baseline_half_life_hours * 3600, max_names=_MAX_CATEGORIES)
        self.members: dict[str, DecayedSums] = {}  # member key -> its decayed session counts by model and tier
        self.candidates: list[tuple[Any, ...]] | None = None  # the statistical verdict; None: to recompute

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "recent" not in state:  # the request-counting detector's state (before sessions): learn afresh
            state = {"first_ts": None, "recent": {}, "baseline": None, "members": {}, "candidates": None}
        super().__setstate__(state)

    def derive(self) -> None:
        if getattr(self, "baseline", ...) is None:  # restored from an older layout: a fresh baseline
            self.baseline = DecayedSums(self.config.baseline_half_life_hours * 3600, max_names=_MAX_CATEGORIES)
        self._cfg_min_spend = micros_threshold(self.config.min_drift_spend_usd)
        self._cfg_min_extra = float(self.config.min_extra_usd_per_day) * MICROS
        # a decayed count holds about half_life / ln 2 of steady traffic: this share of it is one day's
        self._cfg_day_share = 86_400 * math.log(2.0) / (self.config.baseline_half_life_hours * 3600)
        self._cfg_recent_s = self.config.recent_hours * 3600

    # -- learning ----------------------------------------------------------------------
    def learn_one(self, obs: Observation, ctx: Context) -> None:
        if self.first_ts is None:
            self.first_ts = obs.ts
        session_id = obs.session_id or f"request:{obs.record_id}"
        session = self.recent.get(session_id)
        if session is None:
            tier = _tier(obs.model, obs.provider, self.config.tiers)
            session = self.recent[session_id] = [obs.ts, obs.key_hash or "", obs.model, tier, 0, 0]
            self.candidates = None
            if len(self.recent) > self.config.max_recent_sessions:
                self._fold(next(iter(self.recent)))
        session[_REQUESTS] += 1
        session[_COST] += obs.cost

    def _fold(self, session_id: str) -> None:
        """Move one session from the recent set into the baselines."""
        start, member, model, tier, requests, cost = self.recent.pop(session_id)
        counts = {"s": 1.0, f"m:{model}": 1.0, f"t:{tier}": 1.0}
        self.baseline.fold(start, {**counts, "n": float(requests), "c": float(cost)})
        sums = self.members.get(member)
        if sums is None:
            if len(self.members) >= _MAX_MEMBERS:  # forget the member with the fewest sessions
                del self.members[min(self.members, key=lambda m: self.members[m].get("s"))]
            sums = self.members[member] = DecayedSums(self.baseline.half_life_s, max_names=_MAX_CATEGORIES)
        sums.fold(start, {**counts, "n": float(requests), "c": float(cost)})
        self.candidates = None

    # -- scoring -----------------------------------------------------------------------
    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        recent = self.recent
        horizon = now - self._cfg_recent_s
        while recent:
            oldest = next(iter(recent))
            if recent[oldest][_START] >= horizon:
                break
            self._fold(oldest)
        if self.candidates is None:
            self.candidates = self._significant(now)
        for candidate in self.candidates:
            finding = self._finding(ctx, *candidate)
            if finding is not None:
                return [finding]
        return []

    def _significant(self, now: float) -> list[tuple[Any, ...]]:
        """Models and tiers whose count among the newest sessions is improbable under the members' habits."""
        cfg, baseline = self.config, self.baseline
        base_sessions = baseline.get("s")
        if base_sessions < cfg.min_baseline_sessions or now - (self.first_ts or now) < cfg.min_history_hours * 3600:
            return []
        sessions = [(sid, s) for sid, s in reversed(self.recent.items())
                    if (m := self.members.get(s[_MEMBER])) is not None and m.get("s") >= cfg.min_baseline_sessions]
        positions: dict[str, list[int]] = {}  # category -> where among the sessions it was used
        for i, (_, s) in enumerate(sessions):
            for category in (f"m:{s[_MODEL]}", f"t:{s[_TIER]}"):
                positions.setdefault(category, []).append(i)
        # every session's weight against the newest, and each member's reference sessions: its baseline plus all
        # its recent ones (what the tested window grows over is removed from it step by step)
        decay = math.log(2.0) / baseline.half_life_s
        newest = sessions[0][1][_START] if sessions else 0.0
        weights = []
        member_sessions: dict[str, float] = {}
        for _, s in sessions:
            w = math.exp(-decay * max(0.0, newest - s[_START]))
            weights.append(w)
            member = s[_MEMBER]
            total = member_sessions.get(member)
            member_sessions[member] = (self.members[member].get("s") if total is None else total) + w
        # every new session is a look: hold each to the day's significance shared among a usual day's sessions,
        # so a busy key is not paged by chance more often than a sparse one
        level = cfg.significance / max(1.0, base_sessions * self._cfg_day_share)
        found = []
        for category, hits in positions.items():
            if len(hits) < cfg.min_sessions:
                continue
            best = self._most_improbable(category, sessions, weights, member_sessions, hits, base_sessions, level)
            if best is not None:
                found.append(best)
        found.sort(key=lambda c: (c[0], c[1][0] != "m"))  # most improbable first; a model before its tier
        return found

    def _most_improbable(self, category: str, sessions: list[tuple[str, list[Any]]], weights: list[float],
                         member_sessions: dict[str, float], hit_positions: list[int],
                         base_sessions: float, level: float) -> tuple[Any, ...] | None:
        """The newest *m* sessions whose count of ``category`` is least probable under the sessions before them.

        Each member's habit is its decayed baseline plus its recent sessions *older* than the newest *m*
        (a sparse key's last day is a good part of what it is known to do, and the freshest part).
        """
        cfg = self.config
        subject_share = (self.baseline.get(category) + 1.0) / (base_sessions + 2.0)
        kind, _, name = category.partition(":")
        # member -> [hits, sessions] of the reference, removed one by one as the tested window grows over them
        reference = {member: [self.members[member].get(category), total] for member, total in member_sessions.items()}
        for i in hit_positions:
            reference[sessions[i][1][_MEMBER]][0] += weights[i]
        hit_at = set(hit_positions)
        remaining = len(hit_positions)  # hits further back than the window
        drawn: dict[str, int] = {}  # member -> its sessions among the newest m
        # each member's (n p, n p (1 - p)) and their running sums: a step changes one member's term, so the
        # z check costs O(1) per step instead of O(members); the exact sums decide whenever it is close
        terms: dict[str, tuple[float, float]] = {}
        running_expected = running_variance = 0.0
        k = 0
        best = None
        for m, ((_, s), w) in enumerate(zip(sessions, weights), start=1):
            member = s[_MEMBER]
            ref = reference[member]
            hit = m - 1 in hit_at
            ref[1] -= w
            if hit:
                ref[0] -= w
            n = drawn[member] = drawn.get(member, 0) + 1
            a, b = _habit(ref[0], ref[1], subject_share)
            p = a / (a + b)
            old_expected, old_variance = terms.get(member, (0.0, 0.0))
            terms[member] = (n * p, n * p * (1.0 - p))
            running_expected += n * p - old_expected
            running_variance += n * p * (1.0 - p) - old_variance
            if hit:
                k += 1
                remaining -= 1
            # no longer window can qualify: even if every hit left came next, too few or too small a share
            if k + remaining < cfg.min_sessions or k + remaining < cfg.min_share * (m + remaining) - _RUNNING_SUM_SLACK:
                break
            if not hit or k < cfg.min_sessions or k < cfg.min_share * m:
                continue
            if (k - running_expected) < _MIN_Z * max(0.0, running_variance) ** 0.5 - _RUNNING_SUM_SLACK:
                continue
            priors = []
            expected = variance = 0.0
            for who, n in drawn.items():
                a, b = _habit(*reference[who], subject_share)
                priors.append((n, a, b))
                p = a / (a + b)
                expected += n * p
                variance += n * p * (1.0 - p)
            if (k - expected) < _MIN_Z * variance ** 0.5:
                continue
            tail = beta_binomial_tail(k, priors) * m  # Bonferroni
            if tail < level and (best is None or tail < best[0]):
                best = (tail, (kind, name), m, k, expected / m)
        if best is None:
            return None
        return (*best, tuple(sid for sid, _ in sessions[:best[2]]))

    def _finding(self, ctx: Context, tail: float, category: tuple[str, str], m: int, k: int,
                 expected_share: float, session_ids: tuple[str, ...]) -> Finding | None:
        cfg = self.config
        kind, name = category
        newest = [self.recent[sid] for sid in session_ids]
        drifted = [s for s in newest if (s[_MODEL] if kind == "m" else s[_TIER]) == name]
        drift_cost = sum(s[_COST] for s in drifted)
        cost = sum(s[_COST] for s in newest)
        # against what these requests would have cost at each one's own key's usual price per request (a team
        # whose pricey key is asleep is not cheaper); a key with no such history yet uses the subject's
        base_n, base_c = self.baseline.get("n"), self.baseline.get("c")
        rates: dict[str, float] = {}
        expected = 0.0
        for s in newest:
            rate = rates.get(s[_MEMBER])
            if rate is None:
                sums = self.members.get(s[_MEMBER])
                n, c = (sums.get("n"), sums.get("c")) if sums is not None else (0.0, 0.0)
                rate = rates[s[_MEMBER]] = c / n if n > 0 and c > 0 else (base_c / base_n if base_n > 0 else 0.0)
            expected += s[_REQUESTS] * rate
        cost_ratio = cost / expected if expected > 0 else float("inf")
        if cost_ratio < cfg.cost_per_request_factor:
            return None
        if drift_cost < self._cfg_min_spend:
            # the sessions so far spent little (a sparse, cheap key's first two): what would a day at this mix add,
            # at the members' usual requests a day? (their decayed request counts, which leave out the recent day:
            # an underestimate, so this errs towards not paging)
            requests = sum(s[_REQUESTS] for s in newest)
            per_day = sum(self.members[who].get("n") for who in rates if who in self.members) * self._cfg_day_share
            extra_per_day = (cost - expected) / requests * per_day if requests else 0.0
            if extra_per_day < self._cfg_min_extra:
                return None
        if kind == "m":
            tier = _tier(name, None, cfg.tiers)
            what = f"{name} ({tier})" if tier != "unknown" else name
        else:
            what = f"{name}-tier models"
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        summary = (
            f"{ctx.scope} {who or ctx.subject}: {k} of its last {m} sessions ({usd(drift_cost)}) went to {what}, "
            f"against {expected_share:.0%} of its sessions usually; cost per request {cost_ratio:.1f}x baseline"
        )
        return Finding(
            abnormal=True, observed=round(k / m, 4), expected=round(expected_share, 4), unit="ratio",
            summary=summary, root_cause_kinds=("model", "session", "tag"),
            details={"drifted": name, "level": "model" if kind == "m" else "tier", "sessions": m,
                     "drifted_sessions": k, "session_share": round(k / m, 4),
                     "baseline_share": round(expected_share, 4), "tail_probability": float(f"{tail:.3g}"),
                     "drifted_usd": round(drift_cost / MICROS, 2), "cost_per_request_ratio": round(cost_ratio, 2)},
        )

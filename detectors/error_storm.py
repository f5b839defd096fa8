"""error_storm: a key whose calls suddenly fail far more often than they usually do.

A client hammering an endpoint that keeps failing (429s, 5xx, timeouts) and retrying burns
quota, latency budget and -- where failures are billed or the retries that succeed are huge --
money, and usually means an agent is stuck or a deployment is broken. The question is the
same for a key sending 20 requests a day and one sending 3,000: *are these failures more than
this key's own failure rate explains?* So the evidence is a binomial tail, not a fixed share
over a fixed window:

* the key's usual failure rate ``p`` is its decayed history (``baseline_half_life_hours``)
  shrunk towards ``prior_failure_rate`` (worth ``prior_requests`` requests, so a new or sparse
  key is judged by an ordinary API's 1-2 %), and never below ``min_reference_rate``;
* over each trailing window of ``windows_minutes`` (10 min catches a busy key at once, 4 h
  gathers a sparse key's few calls), ``f`` of ``n`` requests failed; the detector pages when
  ``P(X >= f | n, p) <= significance / len(windows_minutes)`` (Bonferroni) and the window's
  failures are a real storm, not one unlucky call:

  - at least ``min_failures`` failed, a share of at least ``failure_ratio`` and at least
    ``baseline_factor`` x the usual rate (a statistically clear rise from 1 % to 3 % on a busy
    key is not a storm);
  - they come from at least ``min_failure_units`` distinct (session, minute) pairs: an SDK
    retries a failed call twice within a minute or so, so one call failing three times in a
    row counts as one unit; a retry loop counts once per minute it goes on;
  - at least ``min_stormy_minutes`` distinct *stormy minutes* (at least ``failure_ratio`` of
    the minute's requests failed), and at least ``failure_ratio`` of the requests in the shortest
    window failed too: a provider blip of a
    minute or two that fails everyone's calls is not this key's storm, and a storm whose
    failures stopped is over. (A per-key detector cannot tell a provider outage of several
    minutes from the key's own storm: such an outage pages the busy keys it hits.)

The summary names the error types and the session doing most of the retrying. Minutes in an
episode never reach the baseline.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from spendwatch.detectors.base import Context, Detector, Finding, Observation, usd
from spendwatch.detectors.rolling import BucketWindow, DecayedSums

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, ErrorStormConfig

_BUCKET_S = 60.0
_NO_SESSION = "s:\x00"  # failures without a session id: one unit per minute
_TAINTED = "x"  # a bucket seen during an episode: never folded into the baseline


def binomial_upper_tail(failures: int, requests: int, rate: float) -> float:
    """P(X >= ``failures``) for X ~ Binomial(``requests``, ``rate``), summed in log space.

    Exact, and cheap when ``failures`` is far above ``requests * rate`` (the terms fall fast, so
    the sum stops once they no longer matter).

    >>> f"{binomial_upper_tail(3, 3, 0.02):.1e}", f"{binomial_upper_tail(5, 8, 0.02):.1e}"
    ('8.0e-06', '1.7e-07')
    >>> binomial_upper_tail(0, 10, 0.5), binomial_upper_tail(11, 10, 0.5)
    (1.0, 0.0)
    >>> round(binomial_upper_tail(6, 300, 0.02), 2)   # six failures of 300 at 2%: ordinary
    0.56
    """
    if failures <= 0:
        return 1.0
    if failures > requests:
        return 0.0
    if rate >= 1.0:
        return 1.0
    log_p, log_q = math.log(rate), math.log1p(-rate)
    lg_n = math.lgamma(requests + 1)
    total, largest = 0.0, -math.inf
    for k in range(failures, requests + 1):
        term = lg_n - math.lgamma(k + 1) - math.lgamma(requests - k + 1) + k * log_p + (requests - k) * log_q
        if term > largest:
            total = total * math.exp(largest - term) + 1.0 if largest > -math.inf else 1.0
            largest = term
        else:
            total += math.exp(term - largest)
            if term < largest - 40 and k > requests * rate:
                break
    return min(1.0, total * math.exp(largest))


class ErrorStorm(Detector):
    """Failures over trailing windows against a binomial tail of the key's own failure rate.

    Examples
    --------
    A key with 1% failures for a day, then a client retrying a rate-limited call every 2 s,
    19 calls in 20 failing; it pages within the first minute (two stormy minutes, counting an
    ordinary failure earlier in the hour, 15 failures where 1% of 74 requests were expected):

    >>> from spendwatch.detectors.baseline import SpendBaseline
    >>> from spendwatch.detectors.contributors import Contributors
    >>> from spendwatch.detectors.config import BaselineConfig, ErrorStormConfig
    >>> ctx = Context("key", "k1", SpendBaseline(), Contributors(), {"key_alias": "ci-agent"})
    >>> storm = ErrorStorm(ErrorStormConfig(), BaselineConfig(), "key", "k1")
    >>> def call(ts, ok, session="s1"):
    ...     obs = Observation("request", ts, cost=20_000 if ok else 0, ok=ok, session_id=session,
    ...                       error_type=None if ok else "rate_limit_error")
    ...     storm.learn_one(obs, ctx)
    ...     return storm.score_one(ctx, ts, obs)
    >>> t0 = 1_762_041_600.0
    >>> [f for i in range(1440) for f in call(t0 + i * 60, i % 100 != 0, f"s{i}")]
    []
    >>> t1 = t0 + 86_400
    >>> for i in range(1200):
    ...     findings = call(t1 + 2 * i, i % 20 == 0, session="s-retry")
    ...     if findings:
    ...         break
    >>> round(2 * i / 60), findings[0].summary
    (0, 'key ci-agent: 15 of 74 requests failed in the last 60 min (20%, usually 1.1%): rate_limit_error 15; session s-retry retried 14 times')

    Three failures in a row -- one call and its two retries -- on a quiet key are not a storm:

    >>> quiet = ErrorStorm(ErrorStormConfig(), BaselineConfig(), "key", "k2")
    >>> for j in range(3):
    ...     obs = Observation("request", t1 + 5 * j, ok=False, session_id="s", error_type="Timeout")
    ...     quiet.learn_one(obs, ctx)
    ...     print(quiet.score_one(ctx, obs.ts, obs))
    []
    []
    []
    """

    name = "error_storm"
    parts = {"window": BucketWindow, "baseline": DecayedSums}
    config: ErrorStormConfig

    def __init__(self, config: ErrorStormConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.window = BucketWindow(max(config.windows_minutes) * 60, _BUCKET_S)
        self.baseline = DecayedSums(config.baseline_half_life_hours * 3600)
        self.abnormal = False

    def derive(self) -> None:
        window = self.__dict__.get("window")  # restored from a snapshot: follow the configured windows
        if window is not None and window.window_s != max(self.config.windows_minutes) * 60:
            window.window_s = max(self.config.windows_minutes) * 60
            window._set_first(window.first)

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        window = self.window
        if obs.ts >= window.expires_from:
            self._expire(obs.ts)
        if obs.ok:  # the common case, add(ts, {"n": 1.0}) inlined
            for sums in (window.bucket_at(obs.ts), window.totals):
                sums["n"] = sums.get("n", 0.0) + 1.0
            return
        session = f"s:{obs.session_id}" if obs.session_id else _NO_SESSION
        window.add(obs.ts, {"n": 1.0, "f": 1.0, "fc": float(obs.cost), f"e:{obs.error_type or 'unknown'}": 1.0,
                            session: 1.0})

    def _expire(self, now: float) -> None:
        for index, sums in self.window.expire(now):
            if _TAINTED not in sums:  # never learn from a storm
                self.baseline.fold(index * _BUCKET_S, {"n": sums.get("n", 0.0), "f": sums.get("f", 0.0)})

    def usual_rate(self) -> float:
        """The failure rate this subject is judged against: its history shrunk towards the prior."""
        cfg = self.config
        n, f = self.baseline.get("n"), self.baseline.get("f")
        smoothed = (f + cfg.prior_failure_rate * cfg.prior_requests) / (n + cfg.prior_requests)
        return max(smoothed, cfg.min_reference_rate)

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        if obs is not None and obs.ok and not self.abnormal:
            return []  # a success cannot start a storm; scoring only failures keeps the hot path cheap
        self._expire(now)
        self.abnormal = False
        if not self.window.totals.get("f"):
            return []
        storm = self._strongest(now)
        if storm is None:
            return []
        self.abnormal = True
        for bucket in self.window.buckets.values():
            bucket[_TAINTED] = 1.0
        return [self._finding(ctx, *storm)]

    def _strongest(self, now: float) -> tuple[int, float, float, float, dict[str, float], float] | None:
        """The first window (shortest first) whose failures are a storm: (minutes, n, f, tail, sums, usual)."""
        cfg = self.config
        usual = self.usual_rate()
        alpha = cfg.significance / len(cfg.windows_minutes)
        newest = int(now // _BUCKET_S)
        buckets = self.window.buckets
        n = f = units = 0.0
        stormy, recent = 0, False
        sums: dict[str, float] = {}
        spans = sorted(cfg.windows_minutes)
        span_i = 0
        for index in sorted(buckets, reverse=True):
            while span_i < len(spans) and index <= newest - spans[span_i]:
                if span_i == 0:  # the storm is still on: the shortest window fails at least failure_ratio
                    recent = n > 0 and f >= cfg.failure_ratio * n
                found = self._judge(spans[span_i], recent, n, f, units, stormy, usual, alpha, sums)
                if found is not None:
                    return found
                span_i += 1
            if span_i >= len(spans):
                return None
            bucket = buckets[index]
            n += bucket.get("n", 0.0)
            failed = bucket.get("f", 0.0)
            if failed:
                f += failed
                units += sum(1 for name in bucket if name.startswith("s:"))
                if failed >= cfg.failure_ratio * bucket["n"]:  # a stormy minute (a busy key's ordinary ones are not)
                    stormy += 1
                for name, value in bucket.items():
                    if name[0] in "es" or name == "fc":
                        sums[name] = sums.get(name, 0.0) + value
        for span in spans[span_i:]:
            if span_i == 0:
                recent, span_i = n > 0 and f >= cfg.failure_ratio * n, 1
            found = self._judge(span, recent, n, f, units, stormy, usual, alpha, sums)
            if found is not None:
                return found
        return None

    def _judge(self, span: int, recent: bool, n: float, f: float, units: float, stormy: int,
               usual: float, alpha: float, sums: dict[str, float]
               ) -> tuple[int, float, float, float, dict[str, float], float] | None:
        cfg = self.config
        if f < cfg.min_failures or units < cfg.min_failure_units or stormy < cfg.min_stormy_minutes:
            return None
        if not recent:
            return None  # over, or not yet: the shortest window does not fail at least failure_ratio
        ratio = f / n
        if ratio < cfg.failure_ratio or ratio < cfg.baseline_factor * usual:
            return None
        tail = binomial_upper_tail(int(f), int(n), usual)
        if tail > alpha:
            return None
        return span, n, f, tail, dict(sums), usual

    def _finding(self, ctx: Context, span: int, n: float, failed: float, tail: float, sums: dict[str, float],
                 usual: float) -> Finding:
        errors = sorted(((k[2:], v) for k, v in sums.items() if k.startswith("e:")), key=lambda kv: -kv[1])
        sessions = sorted(((k[2:], v) for k, v in sums.items() if k.startswith("s:") and k != _NO_SESSION),
                          key=lambda kv: -kv[1])
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        kinds = ", ".join(f"{name} {count:.0f}" for name, count in errors[:3])
        retry = f"; session {sessions[0][0]} retried {sessions[0][1]:.0f} times" if sessions else ""
        billed = f"; {usd(sums['fc'])} billed for failures" if sums.get("fc") else ""
        ratio = failed / n
        summary = (
            f"{ctx.scope} {who or ctx.subject}: {failed:.0f} of {n:.0f} requests failed in the last "
            f"{span} min ({ratio:.0%}, usually {usual:.1%}): {kinds}{retry}{billed}"
        )
        labels = {"session": sessions[0][0]} if sessions and sessions[0][1] >= failed / 2 else {}
        return Finding(
            abnormal=True, observed=round(ratio, 4), expected=round(usual, 4), unit="ratio", summary=summary,
            labels=labels, root_cause_kinds=("model", "session", "tag"),
            details={"failures": int(failed), "requests": int(n), "window_minutes": span,
                     "tail_probability": float(f"{tail:.3g}"), "error_types": dict(errors[:5]),
                     "sessions": dict(sessions[:3])},
        )

"""error_storm: failure and retry rates that signal a doom loop.

A client hammering an endpoint that keeps failing (429s, 5xx, timeouts) and retrying at
once burns quota, latency budget and -- where failures are billed or the retries that
succeed are huge -- money, and usually means an agent is stuck. Over the last
``window_minutes`` (1-minute buckets) the detector counts requests and failures and pages
when at least ``min_failures`` failed, they are at least ``failure_ratio`` of the window's
requests, and that ratio is at least ``baseline_factor`` x the subject's usual failure
ratio (exponentially decayed, ``baseline_half_life_hours``; a subject with no history is
judged by the absolute rules alone). The summary names the error types and the session
doing the retrying. The baseline does not learn while an episode is active.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spendwatch.detectors.base import Context, Detector, Finding, Observation, usd
from spendwatch.detectors.rolling import BucketWindow, DecayedSums

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, ErrorStormConfig

_BUCKET_S = 60.0
_MIN_BASELINE_REQUESTS = 100.0


class ErrorStorm(Detector):
    """Failures in the window against absolute floors and the subject's usual failure ratio.

    Examples
    --------
    A key with 1% failures for a day, then a client retrying a rate-limited call every second:

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
    >>> [f for i in range(1440) for f in call(t0 + i * 60, i % 100 != 0)]
    []
    >>> t1 = t0 + 86_400
    >>> for i in range(120):
    ...     findings = call(t1 + i, i % 20 == 0, session="s-retry")
    ...     if findings:
    ...         break
    >>> i, findings[0].summary
    (52, 'key ci-agent: 50 of 62 requests failed in the last 10 min (81%, usually 1.0%): rate_limit_error 50; session s-retry retried 50 times')
    """

    name = "error_storm"
    parts = {"window": BucketWindow, "baseline": DecayedSums}
    config: ErrorStormConfig

    def __init__(self, config: ErrorStormConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.window = BucketWindow(config.window_minutes * 60, _BUCKET_S)
        self.baseline = DecayedSums(config.baseline_half_life_hours * 3600)
        self.abnormal = False

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        if obs.ok:  # the common case, add(ts, {"n": 1.0}) inlined
            for sums in (self.window.bucket_at(obs.ts), self.window.totals):
                sums["n"] = sums.get("n", 0.0) + 1.0
            return
        values = {"n": 1.0, "f": 1.0, "fc": float(obs.cost), f"e:{obs.error_type or 'unknown'}": 1.0}
        if obs.session_id:
            values[f"s:{obs.session_id}"] = 1.0
        self.window.add(obs.ts, values)

    def score_one(self, ctx: Context, now: float, obs: Observation | None = None) -> list[Finding]:
        cfg, window, baseline = self.config, self.window, self.baseline
        if obs is not None and obs.ok and not self.abnormal:
            return []  # a success cannot start a storm; scoring only failures keeps the hot path cheap
        for index, sums in window.expire(now):
            if not self.abnormal:  # never learn from the anomaly being flagged
                baseline.fold(index * _BUCKET_S, {"n": sums.get("n", 0.0), "f": sums.get("f", 0.0)})
        self.abnormal = False
        totals = window.totals
        n, failed = totals.get("n", 0.0), totals.get("f", 0.0)
        if failed < cfg.min_failures:
            return []
        ratio = failed / n
        base_n = baseline.get("n")
        usual = baseline.get("f") / base_n if base_n >= _MIN_BASELINE_REQUESTS else 0.0
        if ratio < cfg.failure_ratio or ratio < cfg.baseline_factor * usual:
            return []
        self.abnormal = True
        errors = sorted(((k[2:], v) for k, v in totals.items() if k.startswith("e:")), key=lambda kv: -kv[1])
        sessions = sorted(((k[2:], v) for k, v in totals.items() if k.startswith("s:")), key=lambda kv: -kv[1])
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        kinds = ", ".join(f"{name} {count:.0f}" for name, count in errors[:3])
        retry = f"; session {sessions[0][0]} retried {sessions[0][1]:.0f} times" if sessions else ""
        billed = f"; {usd(totals['fc'])} billed for failures" if totals.get("fc") else ""
        summary = (
            f"{ctx.scope} {who or ctx.subject}: {failed:.0f} of {n:.0f} requests failed in the last "
            f"{cfg.window_minutes} min ({ratio:.0%}, usually {usual:.1%}): {kinds}{retry}{billed}"
        )
        labels = {"session": sessions[0][0]} if sessions and sessions[0][1] >= failed / 2 else {}
        return [Finding(
            abnormal=True, observed=round(ratio, 4), expected=round(usual, 4), unit="ratio", summary=summary,
            labels=labels, root_cause_kinds=("model", "session", "tag"),
            details={"failures": int(failed), "requests": int(n), "error_types": dict(errors[:5]),
                     "sessions": dict(sessions[:3])},
        )]

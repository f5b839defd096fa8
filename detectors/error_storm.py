"""error_storm: failure and retry rates that signal a doom loop.

A client hammering an endpoint that keeps failing (429s, 5xx, timeouts) and retrying at
once burns quota, latency budget and -- where failures are billed or the retries that
succeed are huge -- money, and usually means an agent is stuck.

Evidence is proportional to volume: a CUSUM over the subject's requests of the log-likelihood
ratio "failing at ``failure_ratio`` (or ``baseline_factor`` x its usual ratio, when higher)"
against "failing at its usual ratio" (exponentially decayed, ``baseline_half_life_hours``; at
least ``min_usual_ratio``). A failure adds ``log(p1 / p0)``, a success ``log((1 - p1) / (1 - p0))``;
it pages once the evidence reaches ``evidence_nats`` with at least ``min_failures`` failures
over ``min_minutes`` since it began to rise -- a busy key within a minute or two, a key with
a few requests an hour within hours -- and until it is back to 0, while requests still fail
within ``window_minutes``. It is capped at ``evidence_nats``, so ordinary traffic brings it back
within a few dozen requests however long the storm lasted.
An hour without failures starts it afresh. The summary names the error types and the session
doing the retrying. The baseline does not learn while an episode is active.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from spendwatch.detectors.base import Context, Detector, Finding, Observation, usd
from spendwatch.detectors.rolling import BucketWindow, DecayedSums

if TYPE_CHECKING:
    from spendwatch.detectors.config import BaselineConfig, ErrorStormConfig

_BUCKET_S = 60.0
_MIN_BASELINE_REQUESTS = 100.0
#: An hour without failures starts the evidence afresh.
_QUIET_S = 3600.0


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
    >>> for i in range(600):
    ...     findings = call(t1 + i, i % 20 == 0, session="s-retry")
    ...     if findings:
    ...         break
    >>> i, findings[0].summary
    (121, 'key ci-agent: 115 of 121 requests failed in the last 2 min (95%, usually 1.0%): rate_limit_error 115; session s-retry retried 115 times')
    """

    name = "error_storm"
    parts = {"window": BucketWindow, "baseline": DecayedSums}
    config: ErrorStormConfig
    # defaults for a state snapshotted before the evidence existed
    evidence = 0.0
    since: float | None = None
    failed = requests = 0
    last_failure = -math.inf
    storming = False  # the evidence reached the threshold and has not gone back to 0 since

    def __init__(self, config: ErrorStormConfig, baseline_config: BaselineConfig, scope: str, subject: str) -> None:
        super().__init__(config, baseline_config, scope, subject)
        self.window = BucketWindow(config.window_minutes * 60, _BUCKET_S)
        self.baseline = DecayedSums(config.baseline_half_life_hours * 3600)
        self.abnormal = False
        # the CUSUM and what it has counted since it last rose from 0
        self.evidence = 0.0
        self.since: float | None = None
        self.failed = 0
        self.requests = 0
        self.last_failure = -math.inf
        self.storming = False

    def _ratios(self) -> tuple[float, float]:
        """(usual, storm) failure ratios the evidence weighs."""
        cfg, baseline = self.config, self.baseline
        base_n = baseline.get("n")
        usual = baseline.get("f") / base_n if base_n >= _MIN_BASELINE_REQUESTS else 0.0
        p0 = min(0.9, max(cfg.min_usual_ratio, usual))
        return p0, min(0.99, max(cfg.failure_ratio, cfg.baseline_factor * p0))

    def _weigh(self, ok: bool, ts: float) -> None:
        if not ok:
            if ts - self.last_failure >= _QUIET_S:
                self.evidence, self.since = 0.0, None
            self.last_failure = max(self.last_failure, ts)
        p0, p1 = self._ratios()
        step = math.log((1 - p1) / (1 - p0)) if ok else math.log(p1 / p0)
        if self.evidence + step <= 0:
            self.evidence, self.since, self.failed, self.requests, self.storming = 0.0, None, 0, 0, False
            return
        if self.since is None:
            self.since = ts
        # capped at the threshold: once the storm is over, ordinary traffic brings it back to 0 within a
        # few dozen requests however long the storm lasted
        self.evidence = min(self.config.evidence_nats, self.evidence + step)
        self.failed += not ok
        self.requests += 1
        if (not self.storming and self.evidence >= self.config.evidence_nats and self.failed >= self.config.min_failures
                and self.last_failure - self.since >= self.config.min_minutes * 60):
            self.storming = True

    def learn_one(self, obs: Observation, ctx: Context) -> None:
        if obs.ok and not self.evidence:  # the common case: nothing to weigh
            for sums in (self.window.bucket_at(obs.ts), self.window.totals):
                sums["n"] = sums.get("n", 0.0) + 1.0
            return
        self._weigh(obs.ok, obs.ts)
        if obs.ok:
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
        if not self.storming or not failed:
            return []
        ratio = self.failed / self.requests
        base_n = baseline.get("n")
        usual = baseline.get("f") / base_n if base_n >= _MIN_BASELINE_REQUESTS else 0.0
        self.abnormal = True
        errors = sorted(((k[2:], v) for k, v in totals.items() if k.startswith("e:")), key=lambda kv: -kv[1])
        sessions = sorted(((k[2:], v) for k, v in totals.items() if k.startswith("s:")), key=lambda kv: -kv[1])
        who = ctx.labels.get("key_alias") if ctx.scope == "key" else None
        kinds = ", ".join(f"{name} {count:.0f}" for name, count in errors[:3])
        retry = f"; session {sessions[0][0]} retried {sessions[0][1]:.0f} times" if sessions else ""
        billed = f"; {usd(totals['fc'])} billed for failures" if totals.get("fc") else ""
        minutes = max(1, round((now - self.since) / 60))
        summary = (
            f"{ctx.scope} {who or ctx.subject}: {self.failed} of {self.requests} requests failed in the last "
            f"{minutes} min ({ratio:.0%}, usually {usual:.1%}): {kinds}{retry}{billed}"
        )
        labels = {"session": sessions[0][0]} if sessions and sessions[0][1] >= failed / 2 else {}
        return [Finding(
            abnormal=True, observed=round(ratio, 4), expected=round(usual, 4), unit="ratio", summary=summary,
            labels=labels, root_cause_kinds=("model", "session", "tag"),
            details={"failures": self.failed, "requests": self.requests, "evidence_nats": round(self.evidence, 1),
                     "window_failures": int(failed), "window_requests": int(n), "error_types": dict(errors[:5]),
                     "sessions": dict(sessions[:3])},
        )]

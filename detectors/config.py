"""Detector thresholds: every knob a user tunes in YAML.

One sub-model per detector, named like the detector (``detectors.spend_spike``,
``detectors.burn_rate``...). Each sub-model derives from :class:`DetectorSettings`
(``enabled``, ``scopes``, the episode lifecycle) and names the class that implements
it in ``implementation``; the engine instantiates every enabled detector from that, so
adding a detector means adding its module and its sub-model here, nothing else.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spendwatch.schemas.pricing import TierThresholds

Scope = Literal["key", "user", "team", "org"]
SeverityName = Literal["critical", "error", "warning", "info"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSettings(_Strict):
    """What every detector has: on/off, where it runs, and its episode lifecycle."""

    #: ``module:Class`` of the detector this section configures.
    implementation: ClassVar[str] = ""
    #: Settings of earlier releases that no longer mean anything: accepted with a warning, then ignored,
    #: so a YAML written for an earlier release still loads.
    retired: ClassVar[frozenset[str]] = frozenset()

    enabled: bool = Field(default=True, description="Run this detector.")
    scopes: tuple[Scope, ...] = Field(
        default=("key",), description="Subjects this detector watches: key (default), user, team, org."
    )
    severity: SeverityName = Field(default="error", description="PagerDuty severity of its pages.")
    repeat_interval_minutes: float = Field(
        default=240, gt=0, description="While an episode lasts, re-notify this often (event time)."
    )
    resolve_after_minutes: float = Field(
        default=60, ge=0, description="An episode resolves once its condition has been normal this long."
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        if isinstance(data, dict) and (old := sorted(cls.retired & data.keys())):
            logging.getLogger("spendwatch.config").warning(
                "%s: %s no longer used (the detector's statistics changed; see docs/detectors.md): ignored",
                cls.__name__, ", ".join(old))
            data = {k: v for k, v in data.items() if k not in cls.retired}
        return data


class BaselineConfig(_Strict):
    """The per-subject spend baseline shared by the spend detectors."""

    min_history_days: int = Field(
        default=3, ge=1, le=7,
        description="Complete days of history before the 7-day daily mean is trusted; before that only "
        "absolute guards apply.",
    )
    profile_alpha: float = Field(
        default=0.3, gt=0, le=1,
        description="Weight of the newest week in the hour-of-week profile (exponentially weighted).",
    )
    top_n: int = Field(default=8, ge=1, le=64, description="Contributors (models, sessions, tags) kept per window.")


class SpendSpikeConfig(DetectorSettings):
    """The day's spend, projected from the current rate, or the last 24 hours' against the 7-day daily mean."""

    implementation: ClassVar[str] = "spendwatch.detectors.spend_spike:SpendSpike"

    factor: float = Field(default=3.0, gt=1, description="Page when 24h spend exceeds factor x the 7-day daily mean.")
    min_excess_usd: Decimal = Field(
        default=Decimal("0.25"), ge=0,
        description="...and exceeds that line by at least this many dollars (the floor for keys spending cents: "
        "whether a key's excess is real is judged by its sessions against its own day-to-day spread).",
    )
    min_excess_share: float = Field(
        default=0.5, ge=0,
        description="...and by at least this share of the 7-day daily mean: the floor on the subject's own scale "
        "(with factor 3, a day of 3.5x; a day or a projection just over the line is within a day's variation).",
    )
    absolute_usd: Decimal | None = Field(
        default=Decimal("2000"), ge=0,
        description="Absolute guard for subjects without enough history: page when their 24h spend exceeds "
        "this (null: off).",
    )
    confidence_z: float = Field(
        default=2.0, gt=0,
        description="The day is projected from the last 30-120 min at the lower confidence bound (this many "
        "standard deviations) of the rise in new sessions, and the day's sessions must be this many standard "
        "deviations of the key's own day-to-day spread above a usual day's: more are needed on a sparse or noisy key.",
    )
    min_day_spread: float = Field(
        default=0.5, ge=0,
        description="The least day-to-day spread (log scale) of the daily session count a subject is taken to "
        "have, however steady its last 7 days looked: a week cannot show a sparse key's spread (its Poisson "
        "noise hides it), and real usage varies (a release, a demo, a colleague borrowing the key).",
    )
    prior_sessions: float = Field(
        default=2.0, ge=0,
        description="...shrunk towards the usual rate as if this many sessions had been seen at it (a few "
        "sessions in a burst on a key that starts one a day are not a rate).",
    )
    resolve_after_minutes: float = Field(default=120, ge=0, description="Normal this long before resolving.")


class BurnRateConfig(DetectorSettings):
    """Sub-hourly burn rate against an hour-of-week seasonal online model, plus day-end projection."""

    implementation: ClassVar[str] = "spendwatch.detectors.burn_rate:BurnRate"

    bucket_minutes: int = Field(default=10, ge=1, le=60, description="The model's bucket (must divide 60).")
    window_minutes: int = Field(default=60, ge=1, le=240, description="Burn rate = spend over this window.")
    score_threshold: float = Field(
        default=0.999, gt=0, lt=1, description="Anomaly score (0-1) above which the window is anomalous."
    )
    min_ratio: float = Field(default=4.0, gt=1, description="...and the rate is at least this multiple of expected.")
    min_excess_usd_per_hour: Decimal = Field(
        default=Decimal("100"), ge=0,
        description="...and at least this many $/h above expected (so one big but ordinary session is not a page: "
        "above session_burn's $50 floor, burn_rate is the catch-all for burns the specific detectors miss).",
    )
    absolute_usd_per_hour: Decimal | None = Field(
        default=Decimal("150"), ge=0, description="Absolute guard in $/h before the model is warm (null: off)."
    )
    grace_hours: int = Field(
        default=24, ge=1,
        description="Hours the model learns (one point per hour, from its second day) before it scores.",
    )
    relearn_hours: int = Field(
        default=12, ge=1,
        description="Flagged hours are held, not learned; a run of this many becomes the new normal (no lock-out).",
    )
    projection_factor: float | None = Field(
        default=None, gt=1,
        description="Page when the projected day-end spend exceeds this x the daily mean (null: off; spend_spike "
        "projects the day with evidence counted in sessions).",
    )
    projection_window_minutes: int = Field(
        default=180, ge=10, le=1440, description="The projection extrapolates the burn over this window."
    )
    projection_min_ratio: float = Field(
        default=2.0, gt=1,
        description="...while the current burn rate is at least this multiple of expected (a finished burst that "
        "already blew the day is spend_spike's business).",
    )
    projection_min_excess_usd: Decimal = Field(
        default=Decimal("100"), ge=0, description="...and the projected excess is at least this many dollars."
    )
    resolve_after_minutes: float = Field(default=30, ge=0, description="Normal this long before resolving.")

    @model_validator(mode="after")
    def _divides_hour(self) -> BurnRateConfig:
        if 60 % self.bucket_minutes:
            raise ValueError(f"bucket_minutes={self.bucket_minutes} must divide 60")
        return self


class SessionBurnConfig(DetectorSettings):
    """One session spending far more within the hour than any of this subject's sessions."""

    implementation: ClassVar[str] = "spendwatch.detectors.session_burn:SessionBurn"
    retired: ClassVar[frozenset[str]] = frozenset({"quantile", "quantile_factor"})

    window_minutes: int = Field(default=60, ge=1, le=1440, description="The session's spend is summed over this.")
    threshold_usd: Decimal | None = Field(
        default=None, ge=0, description="Fixed $X; null (default) derives it from the subject's session costs."
    )
    history_factor: float = Field(
        default=5.0, gt=1,
        description="Derived X = this x (1 + prior_sessions / n) x the most any of the n completed sessions spent "
        "within window_minutes (a decayed maximum)...",
    )
    prior_sessions: float = Field(
        default=10, ge=0,
        description="...so a subject with few sessions needs more: 2x the factor after 10 sessions, 1.1x after 100...",
    )
    history_half_life_hours: float = Field(
        default=336, gt=0, description="...the maximum halving every this many hours (an old big session fades).",
    )
    work_factor: float = Field(
        default=2.0, ge=0,
        description="...and, as well, the session's spend must pass this x (1 + prior_sessions / n) x the most "
        "tokens any completed session sent and received within window_minutes (decayed alike), priced at the "
        "session's own price per token -- on a model pricier than any of the subject's sessions used, scaled down "
        "to the priciest it used: the subject's usual work on a model it uses is not a burn (0: dollars only).",
    )
    min_usd: Decimal = Field(
        default=Decimal("5"), ge=0, description="...and never below this (a few dollars is never a page).",
    )
    floor_usd: Decimal = Field(
        default=Decimal("50"), ge=0, description="$X until min_sessions sessions have completed (a new subject).",
    )
    min_sessions: int = Field(default=3, ge=1, description="Completed sessions before X is derived.")
    pace_fraction: float = Field(
        default=0.5, ge=0, le=1,
        description="Page early once a session (5 minutes old or more) has spent this fraction of $X within its "
        "last 10 minutes: three times the pace that reaches $X in the hour (0: only at $X).",
    )
    max_tracked_sessions: int = Field(default=256, ge=1, description="Live sessions tracked per subject (LRU).")
    repeat_interval_minutes: float = Field(default=60, gt=0, description="Re-notify this often while it burns.")
    resolve_after_minutes: float = Field(default=30, ge=0, description="Normal this long before resolving.")


class RunawayLoopConfig(DetectorSettings):
    """One session that keeps calling, steadily and without a pause, long after this subject's sessions end."""

    implementation: ClassVar[str] = "spendwatch.detectors.runaway_loop:RunawayLoop"

    pause_minutes: float = Field(
        default=30, gt=0, description="A session silent this long has paused: its run ends (and the episode resolves)."
    )
    min_loop_calls: int = Field(
        default=4, ge=2,
        description="Loop score (+1 per loop-like call, -2 per other) a run needs to page on a subject whose "
        "runs never looped; the time to page scales with the call rate (4: the fifth call of a loop, 4 gaps).",
    )
    min_calls: int = Field(default=5, ge=2, description="Calls a run needs before it may page...")
    min_minutes: float = Field(default=2, ge=0, description="...over at least this many minutes.")
    history_factor: float = Field(
        default=3.0, ge=1,
        description="A run pages once its loop score is this x the highest of any completed run of the subject "
        "(a key whose batch jobs re-send one prompt needs a longer loop), or it goes on this x longer than the "
        "longest (and endless_hours).",
    )
    history_half_life_hours: float = Field(
        default=336, gt=0, description="Half-life of those maxima: an old batch job stops raising the bar.",
    )
    endless_hours: float = Field(
        default=6, gt=0, description="A steady run going on this long without a pause pages whatever its requests.",
    )
    cadence_tolerance: float = Field(
        default=0.5, gt=0, description="A gap within this fraction of the run's typical gap is at its steady cadence."
    )
    token_tolerance: float = Field(
        default=0.05, ge=0,
        description="A call repeats a request when it has the same model and input tokens within this fraction "
        "of those of the previous call and of the call 8 before (a loop's context does not grow)...",
    )
    output_tolerance: float = Field(
        default=0.25, ge=0,
        description="...and output tokens within this fraction of them (ratio, either way; unknown counts pass).",
    )
    min_usd_per_hour: Decimal = Field(
        default=Decimal("1"), ge=0,
        description="A loop costing less than this per hour (if it keeps going) pages with low_spend_severity.",
    )
    low_spend_severity: SeverityName = Field(default="info", description="Severity of a loop under that floor.")
    max_tracked_sessions: int = Field(default=256, ge=1, description="Live sessions tracked per subject (LRU).")
    repeat_interval_minutes: float = Field(default=240, gt=0, description="Re-notify this often while it loops.")
    resolve_after_minutes: float = Field(default=0, ge=0, description="Resolve this long after the session paused.")


class Budget(_Strict):
    """A budget for one team or key, in US dollars."""

    scope: Scope = Field(default="team", description="team (default), key, user or org.")
    subject: str = Field(min_length=1, description="The team name, key hash, user or org.")
    quarterly_usd: Decimal | None = Field(default=None, gt=0, description="Budget per calendar quarter (UTC).")
    monthly_usd: Decimal | None = Field(default=None, gt=0, description="Budget per calendar month (UTC).")
    owner: str | None = Field(default=None, description="Who is paged; copied into the alert's labels.")

    @model_validator(mode="after")
    def _some_budget(self) -> Budget:
        if self.quarterly_usd is None and self.monthly_usd is None:
            raise ValueError(f"budget for {self.scope} {self.subject!r}: set quarterly_usd and/or monthly_usd")
        return self


class BudgetPaceConfig(DetectorSettings):
    """Spend-to-date and forecast against quarterly and monthly budgets."""

    implementation: ClassVar[str] = "spendwatch.detectors.budget_pace:BudgetPace"

    budgets: tuple[Budget, ...] = Field(default=(), description="The budgets; none means the detector is idle.")
    early_fraction: float = Field(
        default=0.6, gt=0, le=1, description="Page when quarter spend-to-date crosses this fraction of the budget..."
    )
    early_before_week: int = Field(default=6, ge=1, le=14, description="...before this week of the quarter (1-based).")
    forecast_min_elapsed_days: float = Field(
        default=7, ge=0,
        description="Days into the period before the forecast may page (too noisy earlier). Forecast = "
        "spend-to-date + the time left at the pace of the last 7 days (a whole week: one heavy day is a seventh "
        "of it), the last partial week shaped by the hour-of-week profile.",
    )
    severity: SeverityName = Field(default="warning", description="PagerDuty severity of its pages.")
    repeat_interval_minutes: float = Field(default=1440, gt=0, description="Re-notify daily while it lasts.")
    resolve_after_minutes: float = Field(default=360, ge=0, description="Normal this long before resolving.")

    @model_validator(mode="after")
    def _unique(self) -> BudgetPaceConfig:
        seen = set()
        for b in self.budgets:
            if (b.scope, b.subject) in seen:
                raise ValueError(f"two budgets for {b.scope} {b.subject!r}")
            seen.add((b.scope, b.subject))
        return self

    @property
    def budget_scopes(self) -> tuple[Scope, ...]:
        return tuple(sorted({b.scope for b in self.budgets}))


class ModelMixDriftConfig(DetectorSettings):
    """A key's (or a team's) sessions moving to a model or price tier they seldom used."""

    implementation: ClassVar[str] = "spendwatch.detectors.model_mix_drift:ModelMixDrift"
    retired: ClassVar[frozenset[str]] = frozenset(
        {"min_baseline_requests", "min_requests", "min_window_spend_usd", "rare_share", "window_minutes"})

    scopes: tuple[Scope, ...] = Field(
        default=("key", "team"), description="Subjects this detector watches: a key's drift and a whole team's "
        "(each session judged against its own key's habit)."
    )
    significance: float = Field(
        default=1e-3, gt=0, lt=1, description="Page when so many of the newest sessions used one model (or tier) "
        "that the chance of it under the keys' usual mix is below this, shared among a usual day's sessions (every "
        "new session is a look: a key with ten sessions a day holds each to a tenth of it, one with a thousand to a "
        "thousandth, so a busy key is not paged by chance more often than a sparse one; Bonferroni-corrected for "
        "the newest sessions looked at)..."
    )
    min_sessions: int = Field(
        default=2, ge=2, description="...at least this many sessions moved (one expensive session is never drift; "
        "two are enough only where the key's long history makes them improbable)..."
    )
    min_share: float = Field(
        default=0.5, gt=0, le=1, description="...making at least this share of the newest sessions looked at..."
    )
    min_drift_spend_usd: Decimal = Field(
        default=Decimal("0.1"), ge=0, description="...which spent at least this many dollars (the dollar floor), "
        "or..."
    )
    min_extra_usd_per_day: Decimal = Field(
        default=Decimal("1"), ge=0, description="...would add at least this many dollars a day at the keys' usual "
        "requests a day (a cheap sparse key's first drifted sessions spend cents; a day of them does not)..."
    )
    cost_per_request_factor: float = Field(
        default=1.5, ge=0, description="...and the newest sessions cost at least this x what their requests cost "
        "at each one's own key's usual price per request (a drift to cheaper models does not page; 0 pages any drift)."
    )
    recent_hours: float = Field(
        default=24, gt=0, description="Sessions started within this many hours are the recent ones tested."
    )
    max_recent_sessions: int = Field(
        default=40, ge=2, le=500, description="At most this many newest sessions are tested; older ones join the "
        "baseline."
    )
    min_baseline_sessions: float = Field(
        default=8, ge=1, description="(Decayed) sessions in the baseline -- and, at team scope, of the key -- "
        "before it is trusted; new keys wait. A short history is doubted by the test itself (its habit is a "
        "Beta prior of that many sessions), so this only keeps a brand-new key out."
    )
    baseline_half_life_hours: float = Field(
        default=72, gt=0, description="Half-life of the baseline mix: a lasting change becomes the new normal."
    )
    min_history_hours: float = Field(
        default=24, ge=0, description="Hours since the subject's first request before its baseline mix is trusted."
    )
    tiers: TierThresholds = Field(
        default_factory=TierThresholds, description="Where the price tiers split (input USD per million tokens). "
        "The same setting as adapters.pricing.tiers: set either; the other follows."
    )


class CacheHitDropConfig(DetectorSettings):
    """A subject's prompt-cache hit ratio (cache-read / input tokens) halving or worse against its baseline."""

    implementation: ClassVar[str] = "spendwatch.detectors.cache_hit_drop:CacheHitDrop"
    retired: ClassVar[frozenset[str]] = frozenset({"wasteful_ratio"})

    window_minutes: int = Field(
        default=120, ge=10, le=1440, description="The window the baseline learns from (once a stretch leaves it) "
        "and an episode goes on in; the evidence itself is the newest 1, 2... 24 sessions of the last day."
    )
    min_drop: float = Field(
        default=0.4, gt=0, le=1, description="Page when a recent span read at least this fraction fewer cached "
        "tokens than its baseline ratios expected (0.4: a halving is caught despite noise; a dip of a quarter is "
        "not)..."
    )
    significance: float = Field(
        default=1e-3, gt=0, lt=1, description="...with evidence: the chance that sessions straying as they normally "
        "do fall that far beyond normal_drop is below this (Bonferroni-corrected)..."
    )
    normal_drop: float = Field(
        default=0.2, ge=0, lt=1, description="A drop this large may be ordinary: the evidence must show a larger one "
        "(keep it below min_drop)."
    )
    min_sessions: float = Field(
        default=1, ge=1, description="...over at least this many (effective) sessions; from 2, the session that lost "
        "the most is left out of the evidence (one session's own prompt is then never the key's cache)..."
    )
    min_session_spread: float = Field(
        default=0.1, ge=0, lt=1, description="The least a session's cache reads are taken to stray from what was "
        "expected (standard deviation, as a fraction) however steady the subject's past: a prior for real traffic, "
        "so a key whose history happened to be uniform still needs two or more halved sessions, not one."
    )
    min_wasted_usd: Decimal = Field(
        default=Decimal("0"), ge=0, description="...and the lost hits cost at least this many dollars in the span, "
        "each billed at the model's input price less its cache-read price (0: off -- the evidence test keeps false "
        "pages out; set a floor to skip keys whose cache is worth cents)."
    )
    min_baseline_ratio: float = Field(
        default=0.3, ge=0, le=1, description="Only subjects whose baseline ratio is at least this (they did cache)."
    )
    min_requests: int = Field(default=2, ge=1, description="Successful requests in a span before it may page.")
    min_input_tokens: int = Field(default=1_000, ge=1, description="Input tokens in a span before it may page.")
    min_baseline_input_tokens: float = Field(
        default=50_000, ge=1, description="(Decayed) input tokens in the baseline before it is trusted."
    )
    min_baseline_sessions: float = Field(
        default=3, ge=1, description="(Decayed) session stretches the normal straying is learnt from first (until "
        "then min_session_spread alone would stand for it; a key with one session a day holds about five)."
    )
    baseline_half_life_hours: float = Field(default=72, gt=0, description="Half-life of the baseline ratio.")


class ContextBloatConfig(DetectorSettings):
    """Requests carrying several times their usual input tokens (or cost) for the same model: prompt bloat."""

    implementation: ClassVar[str] = "spendwatch.detectors.context_bloat:ContextBloat"

    metric: Literal["input_tokens", "usd"] = Field(
        default="input_tokens", description="Size of a request: its input tokens, or its cost (usd; a cache that "
        "stopped hitting then also counts)."
    )
    window_minutes: int = Field(
        default=120, ge=10, le=1440, description="The window the usual sizes learn from (once a stretch leaves it) "
        "and an episode goes on in; growth itself is looked for in the newest 1, 2... 24 sessions of the last day."
    )
    min_factor: float = Field(
        default=2.0, gt=1, description="Page when a recent span's requests are at least this x the usual size for "
        "their model (geometric mean; 2 catches a 3x growth despite noise, and a ramp once it has doubled)..."
    )
    normal_factor: float = Field(
        default=1.25, ge=1, description="...with evidence that they grew beyond this x (ordinary day-to-day drift "
        "of prompt size; keep it below min_factor)..."
    )
    significance: float = Field(
        default=1e-3, gt=0, lt=1, description="...the chance of such growth under the subject's normal straying "
        "being below this (Bonferroni-corrected)..."
    )
    min_sessions: float = Field(
        default=2, ge=2, description="...over at least this many (effective) sessions, the one that grew most left "
        "out of the evidence (one long session, or a runaway loop, is never bloat; with 2, one more grown session "
        "beyond the key's own straying pages)..."
    )
    single_session_requests: int = Field(
        default=0, ge=0, description="One session pages on its own when at least this many of its requests are each "
        "min_factor x the usual size of their own model at their call position (a grown prompt shows in every call; "
        "a session on a model the key seldom uses has no usual of its own and is not evidence on its own) and its "
        "growth is overwhelming evidence, single_session_significance; 0 (default): off, bloat always needs "
        "min_sessions (with 4, seeds 1-5 gained little and context_bloat paged 4 session burns before session_burn)."
    )
    single_session_significance: float = Field(
        default=1e-7, gt=0, lt=1, description="...the chance of that session's mean growth beyond normal_factor under "
        "the subject's learnt session spread (one session is one draw, however many calls it has) being below this "
        "(about 5.2 standard deviations: 4.6x or more at the min_session_spread floor, more on a key whose sessions "
        "range widely)."
    )
    min_session_spread: float = Field(
        default=0.25, ge=0, description="The least a session's mean log-size is taken to stray from its usual "
        "(standard deviation of the natural log; 0.25: about +-28%) however steady the subject's past: a prior for "
        "real traffic, so a key whose history happened to be uniform still needs several grown sessions, not one "
        "large one."
    )
    min_extra_usd: Decimal = Field(
        default=Decimal("0"), ge=0, description="...and the growth cost at least this many dollars in the span (0: "
        "off -- the evidence test keeps false pages out, and a sparse key's bloat is cents per span but still an "
        "incident; set a floor to skip keys whose prompts are worth cents)."
    )
    min_requests: int = Field(
        default=3, ge=1, description="Requests in a span before it may page (the evidence is counted in sessions: "
        "a key whose sessions are single calls pages on three of them)."
    )
    min_baseline_requests: float = Field(
        default=5, ge=1, description="(Decayed) requests at a position in their sessions (call 1, 2-3, 4-7...), all "
        "models together, before their usual size is trusted (the requests are left out of the evidence until then); "
        "a model's own usual size takes over as its requests outnumber this (5: a key with one short session a day "
        "holds about five first calls at a 72-hour half-life; the learnt straying, at least min_session_spread, "
        "covers a usual size known from few)."
    )
    min_baseline_sessions: float = Field(
        default=3, ge=1, description="(Decayed) session stretches the normal straying is learnt from first (until "
        "then min_session_spread alone would stand for it; a key with one session a day holds about five)."
    )
    baseline_half_life_hours: float = Field(default=72, gt=0, description="Half-life of the usual sizes.")

    @model_validator(mode="after")
    def _normal_below_min(self) -> ContextBloatConfig:
        if self.normal_factor >= self.min_factor:
            raise ValueError(f"normal_factor={self.normal_factor} must be below min_factor={self.min_factor}")
        return self


class EfficiencyConfig(DetectorSettings):
    """Spend (or tokens) per accepted outcome trending up while the outcomes themselves do not."""

    implementation: ClassVar[str] = "spendwatch.detectors.efficiency:Efficiency"

    outcome_kinds: tuple[str, ...] = Field(
        default=("task_accepted",), min_length=1, description="Outcome kinds that count as accepted work."
    )
    metric: Literal["usd", "tokens"] = Field(default="usd", description="Cost per outcome in dollars or tokens.")
    window_hours: int = Field(default=24, ge=1, le=168, description="The recent efficiency is measured over this.")
    factor: float = Field(
        default=2.0, gt=1, description="Page when cost per outcome exceeds this x the baseline's (the window's "
        "single most expensive session left out, so one big session is not a trend)..."
    )
    max_outcome_growth: float = Field(
        default=1.25, gt=0, description="...while outcomes per hour are at most this x the baseline's (not rising)."
    )
    min_outcomes: int = Field(default=12, ge=1, description="Outcomes in the window before it may page.")
    min_baseline_outcomes: float = Field(
        default=20, ge=1, description="(Decayed) outcomes in the baseline before it is trusted."
    )
    min_window_spend_usd: Decimal = Field(
        default=Decimal("25"), ge=0, description="Spend in the window before it may page (small keys are noise)."
    )
    baseline_half_life_hours: float = Field(default=168, gt=0, description="Half-life of the baseline efficiency.")
    severity: SeverityName = Field(default="warning", description="PagerDuty severity of its pages.")
    repeat_interval_minutes: float = Field(default=1440, gt=0, description="Re-notify daily while it lasts.")
    resolve_after_minutes: float = Field(default=360, ge=0, description="Normal this long before resolving.")


class ErrorStormConfig(DetectorSettings):
    """Failures far above the key's own failure rate (a retry doom loop, a broken deployment), by a binomial tail."""

    implementation: ClassVar[str] = "spendwatch.detectors.error_storm:ErrorStorm"
    retired: ClassVar[frozenset[str]] = frozenset({"window_minutes"})

    windows_minutes: tuple[int, ...] = Field(
        default=(10, 60, 240), min_length=1,
        description="Trailing windows the failures are counted over (short catches a busy key at once, long "
        "gathers a sparse key's few calls); each is tested at significance / their count.",
    )
    significance: float = Field(
        default=1e-6, gt=0, lt=1,
        description="Page when P(at least this many failures | the window's requests, the usual rate) is at "
        "most this (binomial tail; split over the windows).",
    )
    min_failures: int = Field(default=4, ge=1, description="...and at least this many requests failed...")
    min_failure_units: int = Field(
        default=2, ge=1,
        description="...in at least this many distinct (session, minute) pairs: one call and its SDK retries "
        "failing in a row count once...",
    )
    min_stormy_minutes: int = Field(
        default=2, ge=1,
        description="...in at least this many distinct minutes in which at least failure_ratio of the requests "
        "failed (a provider blip of a minute or two is not the key's storm)...",
    )
    failure_ratio: float = Field(
        default=0.2, gt=0, le=1, description="...at least this share of the window's requests..."
    )
    baseline_factor: float = Field(
        default=3.0, ge=1, description="...and at least this x the usual failure rate (1% -> 3% is no storm)."
    )
    prior_failure_rate: float = Field(
        default=0.02, gt=0, lt=1,
        description="Failure rate assumed for a key with little history (an ordinary LLM API's 1-2%).",
    )
    prior_requests: float = Field(
        default=50, ge=0, description="Weight of that prior, in requests, in the usual failure rate."
    )
    min_reference_rate: float = Field(
        default=0.01, ge=0, lt=1, description="The usual failure rate is never taken below this."
    )
    baseline_half_life_hours: float = Field(default=72, gt=0, description="Half-life of the usual failure rate.")
    repeat_interval_minutes: float = Field(default=60, gt=0, description="Re-notify this often while it storms.")
    resolve_after_minutes: float = Field(default=15, ge=0, description="Normal this long before resolving.")


class DetectorsConfig(_Strict):
    tick_interval_seconds: int = Field(
        default=60, ge=1, le=3600, description="Event-time clock tick: lets episodes resolve without new events."
    )
    idle_tick_seconds: int = Field(
        default=3600, ge=1,
        description="A subject with no active episode is evaluated on the tick only at multiples of this "
        "(a multiple of tick_interval_seconds); subjects with an active episode on every tick.",
    )
    clock_catchup_hours: float = Field(
        default=48, gt=0, le=24 * 400,
        description="Longest gap in event time the clock ticks through (so episodes repeat and resolve); past "
        "it, the rest of a gap (a silent partition, a record dated far ahead) is skipped to its last idle tick, "
        "so one advance costs a bounded number of ticks whatever the gap.",
    )
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    spend_spike: SpendSpikeConfig = Field(default_factory=SpendSpikeConfig)
    burn_rate: BurnRateConfig = Field(default_factory=BurnRateConfig)
    session_burn: SessionBurnConfig = Field(default_factory=SessionBurnConfig)
    runaway_loop: RunawayLoopConfig = Field(default_factory=RunawayLoopConfig)
    budget_pace: BudgetPaceConfig = Field(default_factory=BudgetPaceConfig)
    # detectors-2: model_mix_drift, cache_hit_drop, efficiency, error_storm go below.
    model_mix_drift: ModelMixDriftConfig = Field(default_factory=ModelMixDriftConfig)
    cache_hit_drop: CacheHitDropConfig = Field(default_factory=CacheHitDropConfig)
    context_bloat: ContextBloatConfig = Field(default_factory=ContextBloatConfig)
    efficiency: EfficiencyConfig = Field(default_factory=EfficiencyConfig)
    error_storm: ErrorStormConfig = Field(default_factory=ErrorStormConfig)

    @model_validator(mode="after")
    def _ticks_align(self) -> DetectorsConfig:
        if self.idle_tick_seconds % self.tick_interval_seconds:
            raise ValueError("idle_tick_seconds must be a multiple of tick_interval_seconds")
        return self

    def detector_settings(self) -> dict[str, DetectorSettings]:
        """Every detector section, by detector name, in declaration order."""
        return {
            name: value for name in type(self).model_fields
            if isinstance(value := getattr(self, name), DetectorSettings)
        }

"""Budgets for the synthetic organisation, in the detectors' YAML shape (``detectors.budget_pace``).

Every team gets a quarterly budget sized from its own ordinary spend (the same traffic with
no incidents): comfortably above its pace for all teams but the one carrying the
``budget_overrun`` incident, whose budget its ordinary pace fits but its ramped pace
overruns. The generated run starts mid-quarter with no record of the weeks before, so a
budget here stands for what is left of the quarter.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendwatch.traffic.generator import Request, Traffic
from spendwatch.traffic.population import PICO

#: Budget = factor x (ordinary mean daily spend x days left in the quarter).
TIGHT_FACTOR = 2.2  # weekday pace runs ~1.7x the all-week mean: under it normally, over it once ramped
ROOMY_FACTOR = 3.0


def _quarter_end(ts: float) -> float:
    d = datetime.fromtimestamp(ts, UTC)
    q = (d.month - 1) // 3
    return datetime(d.year + (q == 3), (3 * q + 3) % 12 + 1, 1, tzinfo=UTC).timestamp()


def team_daily_spend(traffic: Traffic) -> dict[str, Decimal]:
    """Each team's mean daily spend (USD) in the same organisation without incidents."""
    quiet = Traffic(traffic.days, traffic.seed, traffic.start, "none", len(traffic.keys), len(traffic.teams))
    totals: dict[str, int] = defaultdict(int)
    for item in quiet.records():
        if isinstance(item, Request):
            totals[item.key.team] += item.cost_pico
    return {team: Decimal(totals.get(team, 0)) / PICO / Decimal(str(traffic.days)) for team, _, _ in traffic.teams}


def suggested_config(traffic: Traffic) -> dict[str, Any]:
    """A ``detectors:`` config section with a budget per team (owner: the team's lead)."""
    days_left = Decimal(str((_quarter_end(traffic.start_ts) - traffic.start_ts) / 86_400))
    budgets = []
    for team, daily in team_daily_spend(traffic).items():
        factor = Decimal(str(TIGHT_FACTOR if team == traffic.budget_team else ROOMY_FACTOR))
        amount = max(Decimal(100), (daily * days_left * factor / 100).quantize(Decimal(1)) * 100)
        budgets.append({"scope": "team", "subject": team, "quarterly_usd": int(amount),
                        "owner": f"{team}-lead@example.com"})
    return {"detectors": {"budget_pace": {"budgets": budgets}}}

"""budget_pace (being written)."""

from __future__ import annotations

from spendwatch.detectors.base import Detector


class BudgetPace(Detector):
    name = "budget_pace"

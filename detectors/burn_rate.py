"""burn_rate (being written)."""

from __future__ import annotations

from spendwatch.detectors.base import Detector


class BurnRate(Detector):
    name = "burn_rate"

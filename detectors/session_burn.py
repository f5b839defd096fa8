"""session_burn (being written)."""

from __future__ import annotations

from spendwatch.detectors.base import Detector


class SessionBurn(Detector):
    name = "session_burn"

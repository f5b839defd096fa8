"""Snapshot helpers: the river statistics that detector state holds, as plain tuples.

Pickling an object costs a class lookup and a call, several times what its plain contents
cost, and the stream worker snapshots every changed subject at each commit. So the state's
parts give their contents as tuples and bytes (their ``__getstate__``), and the river
statistics they hold go through these functions, each ``*_state`` with its ``restore_*``.

>>> from river import stats, utils
>>> days = utils.Rolling(stats.Mean, window_size=7)
>>> for x in (1, 2, 3):
...     days.update(x)
>>> again = restore_rolling_mean(rolling_mean_state(days))
>>> again.get(), list(again.window) == list(days.window), again.window.maxlen
(2.0, True, 7)
>>> fresh = new_rolling_mean(7)
>>> made = utils.Rolling(stats.Mean, window_size=7)
>>> [(k, type(v), getattr(v, "maxlen", None)) for k, v in vars(fresh).items()] == [
...     (k, type(v), getattr(v, "maxlen", None)) for k, v in vars(made).items()]
True
>>> level, spread, q = stats.EWMean(0.3), stats.Var(), stats.Quantile(0.9)
>>> for x in (1.0, 5.0, 2.0):
...     level.update(x); spread.update(x); q.update(x)
>>> [restore(state(s)).get() == s.get() for s, state, restore in [
...     (level, ewmean_state, restore_ewmean), (spread, var_state, restore_var),
...     (q, quantile_state, restore_quantile)]]
[True, True, True]
"""

from __future__ import annotations

import collections
from typing import Any, TypeVar

from river import stats, utils

_T = TypeVar("_T")


def restore(cls: type[_T], state: Any) -> _T:
    """An object of ``cls`` rebuilt from its ``__getstate__`` (without running ``__init__``)."""
    obj = cls.__new__(cls)
    obj.__setstate__(state)  # type: ignore[attr-defined]
    return obj


def new_rolling_mean(window_size: int) -> utils.Rolling:
    """``utils.Rolling(stats.Mean, window_size=window_size)``, without its protocol check.

    The ``isinstance`` test against river's ``Rollable`` protocol costs a third of a new
    subject's state (a worker creates one per new key); ``stats.Mean`` passes it.
    """
    rolling = utils.Rolling.__new__(utils.Rolling)
    rolling.obj = stats.Mean()
    rolling._window_size = window_size
    rolling.window = collections.deque(maxlen=window_size)
    return rolling


def rolling_mean_state(rolling: utils.Rolling) -> tuple[Any, ...]:
    """A ``Rolling(stats.Mean)``: its window size, the arguments of each update in it, the mean."""
    mean = rolling.obj
    return rolling.window_size, [args for args, _ in rolling.window], mean.n, mean._mean


def restore_rolling_mean(state: tuple[Any, ...]) -> utils.Rolling:
    window_size, window, n, mean = state
    rolling = new_rolling_mean(window_size)
    rolling.window.extend((args, {}) for args in window)
    rolling.obj.n, rolling.obj._mean = n, mean
    return rolling


def ewmean_state(ewmean: stats.EWMean) -> tuple[Any, ...]:
    return ewmean.fading_factor, ewmean._ewmean.__getstate__()


def restore_ewmean(state: tuple[Any, ...]) -> stats.EWMean:
    fading_factor, inner = state
    ewmean = stats.EWMean(fading_factor)
    ewmean._ewmean.__setstate__(inner)
    return ewmean


def var_state(var: stats.Var) -> tuple[Any, ...]:
    return var.ddof, var.mean.n, var.mean._mean, var._S


def restore_var(state: tuple[Any, ...]) -> stats.Var:
    ddof, n, mean, s = state
    var = stats.Var(ddof)
    var.mean.n, var.mean._mean, var._S = n, mean, s
    return var


def quantile_state(quantile: stats.Quantile) -> tuple[Any, ...]:
    return quantile.q, quantile._is_updated, quantile._quantile.__getstate__()


def restore_quantile(state: tuple[Any, ...]) -> stats.Quantile:
    q, is_updated, inner = state
    quantile = stats.Quantile(q)
    quantile._quantile.__setstate__(inner)
    quantile._is_updated = is_updated
    return quantile

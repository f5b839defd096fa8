"""The trigger / repeat / resolve lifecycle shared by every detector."""

from __future__ import annotations

from spendwatch.detectors.episodes import EpisodeBook, episode_dedup_key

T = 1_800_000_000.0


def feed(book, verdicts, *, episode="", repeat_s=3600, resolve_s=600):
    out = []
    for offset, abnormal in verdicts:
        action, ep = book.update("d", episode, T + offset, abnormal, repeat_s=repeat_s, resolve_s=resolve_s)
        if action:
            out.append((action, offset, ep.started))
    return out


def test_one_trigger_repeats_at_the_interval_and_one_resolve():
    verdicts = [(m * 60, True) for m in range(0, 150)] + [(m * 60, False) for m in range(150, 200)]
    events = feed(EpisodeBook(), verdicts)
    assert [(a, o) for a, o, _ in events] == [
        ("trigger", 0), ("repeat", 3600), ("repeat", 7200), ("resolve", 149 * 60 + 600)]
    assert {s for _, _, s in events} == {T}


def test_flapping_within_resolve_after_stays_one_episode():
    verdicts = [(0, True), (60, False), (120, True), (400, False), (650, True), (900, False), (1300, False)]
    assert [a for a, _, _ in feed(EpisodeBook(), verdicts)] == ["trigger", "resolve"]


def test_a_new_episode_after_resolve_has_a_new_dedup_key():
    book = EpisodeBook()
    first = feed(book, [(0, True), (700, False)])
    second = feed(book, [(1000, True), (2000, False)])
    assert [a for a, _, _ in first + second] == ["trigger", "resolve", "trigger", "resolve"]
    keys = {episode_dedup_key("d", "key", "k", "", started) for _, _, started in first + second}
    assert len(keys) == 2


def test_concurrent_episodes_are_independent():
    book = EpisodeBook()
    feed(book, [(0, True)], episode="s1")
    feed(book, [(30, True)], episode="s2")
    assert sorted(book.episodes_of("d")) == ["s1", "s2"]
    assert [a for a, _, _ in feed(book, [(700, False)], episode="s1")] == ["resolve"]
    assert book.episodes_of("d") == ["s2"]


def test_normal_without_an_episode_is_silent_and_zero_resolve_after_resolves_at_once():
    assert feed(EpisodeBook(), [(0, False), (60, False)]) == []
    assert [a for a, _, _ in feed(EpisodeBook(), [(0, True), (60, False)], resolve_s=0)] == ["trigger", "resolve"]

"""The least-recently-used store behind the explorer's uploads and rendered pictures."""

from __future__ import annotations

import pytest

from glowflow.explorer.lru import LRU


def test_past_the_capacity_the_oldest_goes_first():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.put("c", 3)
    assert lru.keys() == ["b", "c"] and len(lru) == 2
    assert lru.get("a") is None and "a" not in lru
    assert lru.get("b") == 2 and lru.get("c") == 3


def test_a_hit_makes_a_value_the_most_recently_used():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # now "b" is the least recently used
    lru.put("c", 3)
    assert lru.keys() == ["a", "c"]


def test_storing_under_a_held_key_replaces_and_refreshes_it():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.put("a", 10)
    lru.put("c", 3)
    assert lru.keys() == ["a", "c"] and lru.get("a") == 10


def test_a_miss_changes_nothing_and_capacity_zero_holds_nothing():
    lru = LRU(3)
    lru.put(("edit", "g0"), "picture")
    assert lru.get(("edit", "g1")) is None and lru.keys() == [("edit", "g0")]
    empty = LRU(0)
    empty.put("a", 1)
    assert len(empty) == 0 and empty.get("a") is None
    with pytest.raises(ValueError, match="capacity"):
        LRU(-1)

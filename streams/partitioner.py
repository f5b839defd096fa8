"""Kafka's default partitioner with the key hash cached.

aiokafka's :class:`~aiokafka.partitioner.DefaultPartitioner` hashes every key with a pure
Python murmur2 (about 25 us for a 64-character API key hash, more than the rest of a
send), and a gateway's traffic repeats the same few thousand keys. The partition chosen
is exactly Kafka's (Java client and librdkafka ``murmur2_random``), so records keyed here
land where any other Kafka producer would put them.

>>> from aiokafka.partitioner import DefaultPartitioner
>>> partitions = list(range(8))
>>> all(CachedDefaultPartitioner()(k, partitions, partitions) == DefaultPartitioner()(k, partitions, partitions)
...     for k in (b"key:a", b"team:ml", b"x" * 64))
True
>>> key_partition(b"team:ml", 8) == DefaultPartitioner()(b"team:ml", partitions, partitions)
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

from aiokafka.partitioner import murmur2

#: Distinct keys whose hash is remembered (about 150 bytes each).
CACHE_SIZE = 1 << 17


@lru_cache(maxsize=CACHE_SIZE)
def key_hash(key: bytes) -> int:
    """The non-negative murmur2 hash Kafka partitions a key by."""
    return murmur2(key) & 0x7FFFFFFF


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` in a topic of ``partitions`` partitions."""
    return key_hash(key) % partitions


class CachedDefaultPartitioner:
    """Drop-in for aiokafka's default partitioner (``partitioner=`` of a producer)."""

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)  # noqa: S311 - spreading load, not security
        return all_partitions[key_hash(key) % len(all_partitions)]

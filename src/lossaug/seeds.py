"""Named random streams: one seed split by hashing into independent 63-bit seeds.

Distinct names never share a seed, unlike arithmetic such as ``1000 * seed + epoch`` (seed 0 epoch 1000 and seed 1
epoch 0 collide), and adding a stream never shifts the others.
"""

import hashlib


def stream_seed(seed: int, name: str) -> int:
    """The 63-bit seed of the random stream ``name`` under ``seed``."""
    return int.from_bytes(hashlib.sha256(f"lossaug:{seed}:{name}".encode()).digest()[:8], "little") >> 1

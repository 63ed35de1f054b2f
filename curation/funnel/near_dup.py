"""Near-duplicate prompt clusters: shingles in DuckDB, MinHash in rensa, LSH banding in numpy.

1. Shingles (word or character n-grams of the normalized text) are hashed to uint64 by DuckDB,
   one list per prompt, and handed over as one flat Arrow buffer with row offsets.
2. rensa computes all MinHash signatures from that buffer in one call.
3. LSH: the signature is cut into b bands of r rows (b, r chosen for the threshold); prompts that
   share a band's hash are candidates. Each bucket links its members to one member (a star, so a
   huge bucket costs O(n), not O(n^2)), and each link is kept only if the estimated Jaccard
   similarity passes the threshold.
4. Clusters are the connected components of the kept links.
No Python loop runs per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from prefcurate.core.config import NearDuplicateConfig
from prefcurate.curation.funnel.shingles import char_ngram_hashes_sql, word_ngram_hashes_sql


def shingle_hashes_sql(text_expr: str, config: NearDuplicateConfig) -> str:
    """SQL for a text's list of hashed shingles under the config."""
    if config.shingle == "word":
        return word_ngram_hashes_sql(text_expr, config.shingle_size)
    return char_ngram_hashes_sql(text_expr, config.shingle_size)


def signatures(shingles: pa.ListArray, config: NearDuplicateConfig, chunk_rows: int = 16384) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures from a list array of uint64 shingle hashes.

    rensa hands its digest matrix back as Python lists; converting a chunk at a time keeps that
    detour to a few MB instead of a Python int per signature value at once."""
    from rensa import RMinHash

    shingles = shingles.combine_chunks() if isinstance(shingles, pa.ChunkedArray) else shingles
    values = np.asarray(shingles.values.to_numpy(zero_copy_only=False), dtype=np.uint64)
    offsets = np.asarray(shingles.offsets.to_numpy(zero_copy_only=False), dtype=np.uint64)
    out = np.empty((len(shingles), config.num_perm), dtype=np.uint32)
    for start in range(0, len(shingles), chunk_rows):
        stop = min(start + chunk_rows, len(shingles))
        chunk_offsets = offsets[start:stop + 1]
        chunk_values = values[int(chunk_offsets[0]):int(chunk_offsets[-1])]
        matrix = RMinHash.digest_matrix_from_flat_token_hashes(
            chunk_values, chunk_offsets - chunk_offsets[0], num_perm=config.num_perm, seed=config.seed)
        out[start:stop] = np.array(matrix.to_rows(), dtype=np.uint32)
    return out


@lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimizing the area of false positives below
    the threshold plus false negatives above it (the S-curve 1 - (1 - s^r)^b)."""
    grid = np.linspace(0.0, 1.0, 201)
    best, best_cost = (1, num_perm), float("inf")
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        curve = 1.0 - (1.0 - grid ** rows) ** bands
        cost = np.trapezoid(np.where(grid < threshold, curve, 1.0 - curve), grid)
        if cost < best_cost:
            best, best_cost = (bands, rows), cost
    return best


def _band_hash(sigs: np.ndarray, band: int, rows: int) -> np.ndarray:
    """(n,) uint64: one band's rows mixed into one 64-bit value (a band at a time keeps memory flat)."""
    multipliers = np.random.default_rng(12345 + band).integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (sigs[:, band * rows:(band + 1) * rows].astype(np.uint64) * multipliers).sum(axis=1, dtype=np.uint64)


def candidate_links(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(m, 2) int64 index pairs (member, bucket head) sharing at least one band hash."""
    links = []
    for band in range(bands):
        column = _band_hash(sigs, band, rows)
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        head = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
        mask = head != order
        links.append(np.stack([order[mask], head[mask]], axis=1))
    if not links:
        return np.empty((0, 2), dtype=np.int64)
    found = np.concatenate(links)
    return np.unique(found, axis=0) if len(found) else found


def connected_components(n: int, links: np.ndarray) -> np.ndarray:
    """Component label (the smallest member index) per node, by min-label propagation."""
    labels = np.arange(n, dtype=np.int64)
    if len(links) == 0:
        return labels
    a, b = links[:, 0], links[:, 1]
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        labels = labels[labels]  # pointer jumping: follow labels to their own labels
        if np.array_equal(labels, before):
            return labels


@dataclass
class Clusters:
    labels: np.ndarray  # component label per input row
    candidate_links: int
    verified_links: int
    bands: int
    rows: int


def near_duplicate_clusters(sigs: np.ndarray, config: NearDuplicateConfig) -> Clusters:
    bands, rows = lsh_bands(config.threshold, config.num_perm)
    links = candidate_links(sigs, bands, rows)
    if len(links):
        similarity = (sigs[links[:, 0]] == sigs[links[:, 1]]).mean(axis=1)
        verified = links[similarity >= config.threshold]
    else:
        verified = links
    return Clusters(connected_components(len(sigs), verified), len(links), len(verified), bands, rows)

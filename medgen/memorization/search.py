"""Exact top-k cosine search that streams over the training set with bounded memory.

Embeddings are unit vectors, so cosine similarity is a dot product. :func:`topk_cosine` walks over the
database in chunks (a tensor, or any iterable of ``(C, d)`` chunks, e.g. read from disk), multiplies each
query block by the chunk (``torch.matmul``), keeps the chunk's top-k and merges it into the running top-k:
memory is ``O(query_block × chunk_size)`` whatever the database size. ``backend="faiss"`` uses faiss'
``IndexFlatIP`` (exact inner product) when faiss is importable. Volumes (several slice vectors per item) are
searched with :func:`grouped_topk_cosine`: item similarity = mean over the query's slices of the best match
among the database item's slices.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from medgen.errors import InputError
from medgen.memorization.embedders import Embedded

Backend = Literal["torch", "faiss", "auto"]


@dataclass
class SearchResult:
    """Top-k neighbours of each query, best first.

    Attributes:
        similarity: ``(Q, k)`` float32 cosine similarities, descending.
        index: ``(Q, k)`` long indices into the database (rows, or items for grouped search).
    """

    similarity: Tensor
    index: Tensor


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package is importable."""
    return importlib.util.find_spec("faiss") is not None


def _chunks(database: Tensor | Iterable[Tensor], chunk_size: int) -> Iterable[Tensor]:
    if isinstance(database, Tensor):
        return database.split(chunk_size)
    return database


def _merge(vals: Tensor, idx: Tensor, new_vals: Tensor, new_idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    all_vals, all_idx = torch.cat([vals, new_vals], dim=1), torch.cat([idx, new_idx], dim=1)
    top = all_vals.topk(min(k, all_vals.shape[1]), dim=1)
    return top.values, all_idx.gather(1, top.indices)


def topk_cosine(
    queries: Tensor,
    database: Tensor | Iterable[Tensor],
    k: int = 5,
    chunk_size: int = 2048,
    query_block: int = 2048,
    backend: Backend = "torch",
) -> SearchResult:
    """Exact top-k inner products of unit vectors, streaming over ``database``.

    Args:
        queries: ``(Q, d)`` unit vectors.
        database: ``(N, d)`` unit vectors, or an iterable of ``(C_i, d)`` chunks (streamed once).
        k: Neighbours per query (fewer when the database is smaller).
        chunk_size: Database rows per matmul (when ``database`` is a tensor).
        query_block: Queries per matmul; peak extra memory ≈ ``4 · query_block · chunk_size`` bytes. The
            2048 x 2048 default keeps each product block (16 MiB) near the cache: 2-4x larger blocks were
            10-25 % slower on 2 CPU cores (``benchmarks/memorization_search.py``).
        backend: ``"torch"``, ``"faiss"`` (``IndexFlatIP``; needs a tensor database) or ``"auto"``.

    Returns:
        :class:`SearchResult` with ``(Q, k)`` similarities and database row indices.
    """
    if k < 1:
        raise InputError("--top-k", f"expected at least 1, got {k}")
    if backend == "faiss" or (backend == "auto" and faiss_available() and isinstance(database, Tensor)):
        return _faiss_topk(queries, database, k)
    q = queries.float()
    vals = torch.full((q.shape[0], 0), float("-inf"))
    idx = torch.zeros((q.shape[0], 0), dtype=torch.long)
    offset = 0
    for chunk in _chunks(database, chunk_size):
        chunk = chunk.float()
        if chunk.shape[1] != q.shape[1]:
            raise InputError("database", f"embedding dimension {chunk.shape[1]} differs from the queries' {q.shape[1]}")
        kk = min(k, chunk.shape[0])
        block_vals, block_idx = [], []
        for start in range(0, q.shape[0], query_block):
            top = (q[start : start + query_block] @ chunk.T).topk(kk, dim=1)
            block_vals.append(top.values)
            block_idx.append(top.indices + offset)
        vals, idx = _merge(vals, idx, torch.cat(block_vals), torch.cat(block_idx), k)
        offset += chunk.shape[0]
    if offset == 0:
        raise InputError("database", "no training embeddings to search")
    return SearchResult(vals, idx)


def _faiss_topk(queries: Tensor, database: Tensor | Iterable[Tensor], k: int) -> SearchResult:
    if not faiss_available():
        raise InputError("backend", "faiss is not installed (pip install faiss-cpu), use backend='torch'")
    import faiss  # type: ignore[import-not-found]

    db = database if isinstance(database, Tensor) else torch.cat(list(database))
    index = faiss.IndexFlatIP(db.shape[1])
    index.add(db.float().contiguous().numpy())
    sims, ids = index.search(queries.float().contiguous().numpy(), min(k, db.shape[0]))
    return SearchResult(torch.from_numpy(sims), torch.from_numpy(ids).long())


def best_of_variants(result: SearchResult, variants: int, k: int, block: int = 1024) -> SearchResult:
    """Merge the top-k lists of ``variants`` consecutive query rows (rotated copies of one query) into one.

    Each database index keeps its best similarity over the variants; rows ``(Q·V, k')`` become ``(Q, k)``.
    """
    if variants == 1:
        return result
    sims = result.similarity.reshape(-1, variants * result.similarity.shape[1])
    idx = result.index.reshape(sims.shape)
    out_sims, out_idx = [], []
    for start in range(0, sims.shape[0], block):
        s, i = sims[start : start + block], idx[start : start + block]
        order = s.argsort(dim=1, descending=True)
        s, i = s.gather(1, order), i.gather(1, order)
        seen_before = torch.triu(i.unsqueeze(2) == i.unsqueeze(1), diagonal=1).any(dim=1)  # same index, better sim
        s = s.masked_fill(seen_before, float("-inf"))
        top = s.topk(min(k, s.shape[1]), dim=1)
        out_sims.append(top.values)
        out_idx.append(i.gather(1, top.indices))
    return SearchResult(torch.cat(out_sims), torch.cat(out_idx))


def grouped_topk_cosine(
    queries: Tensor,
    query_owner: Tensor,
    n_queries: int,
    database: Tensor,
    db_owner: Tensor,
    n_items: int,
    k: int = 5,
    chunk_size: int = 16384,
    variants: int = 1,
) -> SearchResult:
    """Top-k database items for multi-vector queries (volumes as slice embeddings), exactly.

    The similarity of query ``q`` to item ``t`` is ``mean_{s ∈ q} max_{u ∈ t} <e_s, e_u>``: each query slice
    is matched to its best slice of ``t`` (max over slice matches), then averaged over the query's slices.
    Memory: ``O(M_q × n_items)`` for the running per-item maxima plus one ``(M_q, chunk_size)`` block.

    Args:
        queries: ``(M_q, d)`` unit vectors (slices of all query volumes).
        query_owner: ``(M_q,)`` query item of each vector, in ``[0, n_queries)``.
        n_queries: Number of query items.
        database: ``(M_d, d)`` unit vectors.
        db_owner: ``(M_d,)`` database item of each vector, in ``[0, n_items)``.
        n_items: Number of database items.
        k: Items per query.
        chunk_size: Database rows per matmul.
        variants: Consecutive query vectors that are versions of one slice (the best counts).

    Returns:
        :class:`SearchResult` of ``(n_queries, k)`` item similarities and item indices.
    """
    best = torch.full((queries.shape[0], n_items), float("-inf"))
    q = queries.float()
    for start in range(0, database.shape[0], chunk_size):
        sims = q @ database[start : start + chunk_size].float().T
        owners = db_owner[start : start + chunk_size].expand(q.shape[0], -1)
        best.scatter_reduce_(1, owners, sims, reduce="amax")
    best = best.view(-1, variants, n_items).amax(dim=1)
    slice_owner = query_owner[::variants]
    counts = torch.bincount(slice_owner, minlength=n_queries).clamp_min(1).unsqueeze(1)
    per_item = torch.zeros(n_queries, n_items).index_add_(0, slice_owner, best) / counts
    top = per_item.topk(min(k, n_items), dim=1)
    return SearchResult(top.values, top.indices)


def search(queries: Embedded, database: Embedded, k: int = 5, backend: Backend = "torch") -> SearchResult:
    """Top-k database images (2D) or volumes (3D, slice-wise) for each query item.

    Raises:
        InputError: One set is 2D and the other 3D.
    """
    if queries.spatial_dims != database.spatial_dims:
        raise InputError("images", "generated and training images must both be 2D or both be 3D")
    if database.variants != 1:
        raise InputError("database", "training embeddings must have one vector per slice (no query rotations)")
    if queries.spatial_dims == 2:
        result = topk_cosine(queries.vectors, database.vectors, k * queries.variants, backend=backend)
        return best_of_variants(result, queries.variants, k)
    return grouped_topk_cosine(
        queries.vectors,
        queries.owner,
        queries.count,
        database.vectors,
        database.owner,
        database.count,
        k,
        variants=queries.variants,
    )

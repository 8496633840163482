"""Exact top-k cosine search that streams over the training set with bounded memory.

Embeddings are unit vectors, so cosine similarity is a dot product. :func:`topk_cosine` walks over the
database in chunks (a tensor, or any iterable of ``(C, d)`` chunks, e.g. read from disk), multiplies each
query block by the chunk (one fp32 GEMM), keeps the block's top-k and merges it into the running top-k:
memory is ``O(query_block × chunk_size)`` whatever the database size. ``backend="faiss"`` uses faiss'
``IndexFlatIP`` (exact inner product) when faiss is importable. Volumes (several slice vectors per item) are
searched with :func:`grouped_topk_cosine`: item similarity = mean over the query's slices of the best match
among the database item's slices.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
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


@contextmanager
def _single_torch_thread(active: bool) -> Iterator[None]:
    """Run torch on one thread while numpy's BLAS runs the products.

    torch's OpenMP threads spin-wait after each op and would fight OpenBLAS' threads for the same cores
    (measured: 25 % slower on 2 cores); the selection that torch does here is a small part of the work.
    """
    if not active:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _product(q: Tensor, chunk: Tensor, out: Tensor) -> Tensor:
    """``q @ chunk.T`` into the contiguous ``out``: numpy's BLAS on CPU, torch elsewhere.

    On CPU the numpy wheel's OpenBLAS sgemm (the BLAS faiss-cpu links too) was 8-10 % faster than torch's MKL
    build on the AMD cores we measured, and the product is ~95 % of an exact search's time
    (``benchmarks/memorization_search.py``). Both are fp32 GEMMs: results agree to rounding.
    """
    if q.device.type == "cpu":
        np.matmul(q.numpy(), chunk.numpy().T, out=out.numpy())
        return out
    return torch.mm(q, chunk.T, out=out)


GROUP = 256
"""Columns per group in :func:`_select`'s scan."""


def _select(sims: Tensor, k: int, offset: int, vals: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Merge a ``(B, C)`` similarity block into the running ``(B, k')`` top-k, exactly.

    ``torch.topk`` over every column would cost a fifth of the product. Once every row holds ``k``
    neighbours, only values above the row's current k-th can enter, and they are few (about
    ``k · C / columns_seen`` per row): one ``amax`` pass finds the rows with any, their values above the k-th
    are listed (by groups of :data:`GROUP` columns whose maxima pass, so only those groups are re-read), and
    each such row's old and new entries are sorted together (by row, then value) and cut at
    ``k``. Ties with the k-th are left out, which gives an equally valid top-k.
    """
    if vals.shape[1] < k:  # the first block(s): fewer than k neighbours so far
        top = sims.topk(min(k, sims.shape[1]), dim=1)
        all_vals = torch.cat([vals, top.values], dim=1)
        all_idx = torch.cat([idx, top.indices + offset], dim=1)
        best = all_vals.topk(min(k, all_vals.shape[1]), dim=1)
        return best.values, all_idx.gather(1, best.indices)
    kth = vals[:, -1]
    n_rows, n_cols = sims.shape
    group = GROUP if n_cols % GROUP == 0 else n_cols
    maxima = sims.view(n_rows, n_cols // group, group).amax(dim=2)  # the one full pass over the block
    group_rows, group_ids = (maxima > kth.unsqueeze(1)).nonzero(as_tuple=True)
    if group_rows.numel() == 0:
        return vals, idx
    hot, rows = torch.unique_consecutive(group_rows, return_inverse=True)  # nonzero lists rows in order
    flat = group_rows * (n_cols // group) + group_ids
    members = sims.view(-1, group).index_select(0, flat)  # (hot groups, group)
    pair, within = (members > kth[group_rows].unsqueeze(1)).nonzero(as_tuple=True)
    new_vals = members[pair, within]
    cols = group_ids[pair] * group + within
    rows = rows[pair]
    old_rows = torch.arange(hot.numel(), device=sims.device).repeat_interleave(k)
    row = torch.cat([old_rows, rows])
    value = torch.cat([vals[hot].reshape(-1), new_vals])
    column = torch.cat([idx[hot].reshape(-1), cols + offset])
    order = value.argsort(descending=True, stable=True)
    order = order[row[order].argsort(stable=True)]  # by row, best first within a row
    row, value, column = row[order], value[order], column[order]
    starts = torch.searchsorted(row, torch.arange(hot.numel(), device=sims.device))
    rank = torch.arange(row.numel(), device=sims.device) - starts[row]
    keep = rank < k
    vals, idx = vals.clone(), idx.clone()
    vals[hot] = value[keep].view(-1, k)
    idx[hot] = column[keep].view(-1, k)
    return vals, idx


def topk_cosine(
    queries: Tensor,
    database: Tensor | Iterable[Tensor],
    k: int = 5,
    chunk_size: int = 2048,
    query_block: int = 4096,
    backend: Backend = "torch",
) -> SearchResult:
    """Exact top-k inner products of unit vectors, streaming over ``database``.

    Args:
        queries: ``(Q, d)`` unit vectors.
        database: ``(N, d)`` unit vectors, or an iterable of ``(C_i, d)`` chunks (streamed once).
        k: Neighbours per query (fewer when the database is smaller).
        chunk_size: Database rows per product (when ``database`` is a tensor).
        query_block: Most queries per product (the queries are cut into equal blocks); peak extra memory
            ≈ ``4 · query_block · chunk_size`` bytes (32 MiB by default). 4096 x 2048 blocks were 0.96x faiss'
            time on 2 CPU cores, 8192 x 1024 0.99x, 2048 x 2048 about 1.0x
            (``benchmarks/memorization_search.py``, medians of 3).
        backend: ``"torch"`` (products by numpy's BLAS on CPU, torch on GPU; selection in torch), ``"faiss"``
            (``IndexFlatIP``; needs a tensor database) or ``"auto"``.

    Returns:
        :class:`SearchResult` with ``(Q, k)`` similarities and database row indices.
    """
    if k < 1:
        raise InputError("top_k", f"expected at least 1, got {k}")
    if backend == "faiss" or (backend == "auto" and faiss_available() and isinstance(database, Tensor)):
        return _faiss_topk(queries, database, k)
    q = queries.float().contiguous()
    n_q, on_cpu = q.shape[0], q.device.type == "cpu"
    query_block = -(-n_q // max(1, -(-n_q // query_block)))  # equal blocks: no thin last product
    starts = range(0, n_q, query_block)
    vals = [torch.full((min(query_block, n_q - s), 0), float("-inf"), device=q.device) for s in starts]
    idx = [torch.zeros((v.shape[0], 0), dtype=torch.long, device=q.device) for v in vals]
    buffer = torch.empty(0, device=q.device)
    offset = 0
    with _single_torch_thread(on_cpu):
        for chunk in _chunks(database, chunk_size):
            chunk = chunk.to(q.device, torch.float32).contiguous()
            if chunk.shape[1] != q.shape[1]:
                raise InputError(
                    "database", f"embedding dimension {chunk.shape[1]} differs from the queries' {q.shape[1]}"
                )
            for block, start in enumerate(starts):
                rows = q[start : start + query_block]
                if buffer.numel() < rows.shape[0] * chunk.shape[0]:
                    buffer = torch.empty(rows.shape[0] * chunk.shape[0], device=q.device)
                sims = _product(rows, chunk, buffer[: rows.shape[0] * chunk.shape[0]].view(rows.shape[0], -1))
                vals[block], idx[block] = _select(sims, k, offset, vals[block], idx[block])
            offset += chunk.shape[0]
    if offset == 0:
        raise InputError("database", "no training embeddings to search")
    return SearchResult(torch.cat(vals), torch.cat(idx))


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


def union(first: SearchResult, second: SearchResult, k: int) -> SearchResult:
    """Merge two retrievals of the same queries: interleave their lists (``first`` leads), drop repeats, keep k.

    Each similarity is the one of the retrieval that proposed the item. With ``k`` items from each list, the
    merged list holds about the top ``k / 2`` of both (all of both when they agree).
    """
    sims, idx = [], []
    lists = (first.similarity.tolist(), first.index.tolist(), second.similarity.tolist(), second.index.tolist())
    for s1, i1, s2, i2 in zip(*lists, strict=True):
        seen: set[int] = set()
        row_s: list[float] = []
        row_i: list[int] = []
        a, b = list(zip(s1, i1, strict=True)), list(zip(s2, i2, strict=True))
        for pair in (p for duo in zip(a, b, strict=False) for p in duo):
            if pair[1] not in seen and len(row_i) < k:
                seen.add(pair[1])
                row_s.append(pair[0])
                row_i.append(pair[1])
        sims.append(row_s)
        idx.append(row_i)
    width = min(len(r) for r in idx) if idx else 0
    return SearchResult(torch.tensor([r[:width] for r in sims]), torch.tensor([r[:width] for r in idx]).long())


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
        InputError: One set is 2D and the other 3D, or ``k`` is below 1 (named ``top_k``, as callers call it).
    """
    if k < 1:
        raise InputError("top_k", f"expected at least 1, got {k}")
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

import pytest
import torch
import torch.nn.functional as F

from medgen.errors import InputError
from medgen.memorization.embedders import Embedded
from medgen.memorization.search import faiss_available, grouped_topk_cosine, search, topk_cosine


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_chunked_topk_equals_full_matrix():
    queries, database = _unit(50, 16, 0), _unit(1000, 16, 1)
    result = topk_cosine(queries, database, k=5, chunk_size=97, query_block=13)
    full = (queries @ database.T).topk(5, dim=1)
    assert torch.equal(result.index, full.indices)
    torch.testing.assert_close(result.similarity, full.values)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_grouped_scan_equals_full_matrix(k: int):
    """Chunks that are multiples of the scan's column groups (so the group prefilter runs), uneven blocks."""
    queries, database = _unit(300, 32, 8), _unit(5000, 32, 9)
    result = topk_cosine(queries, database, k=k, chunk_size=512, query_block=128)
    full = (queries @ database.T).topk(k, dim=1)
    torch.testing.assert_close(result.similarity, full.values)
    assert (result.index == full.indices).float().mean() > 0.999  # BLAS rounding may swap near-ties


def test_ties_keep_k_distinct_neighbours():
    queries = _unit(7, 8, 10)
    database = torch.cat([queries[:1].expand(600, -1), _unit(1448, 8, 11)])  # 600 exact copies of query 0
    result = topk_cosine(queries, database, k=5, chunk_size=512)
    assert result.index[0].unique().numel() == 5
    torch.testing.assert_close(result.similarity[0], torch.ones(5))


def test_streams_an_iterable_of_chunks():
    queries, database = _unit(20, 8, 2), _unit(300, 8, 3)
    result = topk_cosine(queries, iter(database.split(64)), k=3)
    assert torch.equal(result.index, (queries @ database.T).topk(3, dim=1).indices)


def test_k_larger_than_database_and_bad_k():
    result = topk_cosine(_unit(4, 8, 4), _unit(3, 8, 5), k=10)
    assert result.index.shape == (4, 3)
    with pytest.raises(InputError, match="^top_k: "):
        topk_cosine(_unit(4, 8, 4), _unit(3, 8, 5), k=0)


def test_library_names_top_k_and_the_cli_names_the_flag(monkeypatch, tmp_path, capsys):
    from medgen.cli import main

    def detect(*args, **kwargs):
        raise InputError("top_k", "expected at least 1, got 0")

    monkeypatch.setattr("medgen.memorization.detect.detect_memorization", detect)
    argv = ["memorization", "--train", str(tmp_path), "--generated", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--top-k: expected at least 1, got 0" in capsys.readouterr().err


def test_grouped_search_is_mean_of_best_slice_matches():
    q, db = _unit(12, 8, 6), _unit(40, 8, 7)
    q_owner = torch.arange(12) // 4  # 3 query volumes of 4 slices
    db_owner = torch.arange(40) // 8  # 5 training volumes of 8 slices
    result = grouped_topk_cosine(q, q_owner, 3, db, db_owner, 5, k=2, chunk_size=7)
    sims = q @ db.T
    expected = torch.stack(
        [torch.stack([sims[q_owner == a][:, db_owner == b].amax(1).mean() for b in range(5)]) for a in range(3)]
    )
    top = expected.topk(2, dim=1)
    assert torch.equal(result.index, top.indices)
    torch.testing.assert_close(result.similarity, top.values)


def test_search_refuses_2d_against_3d():
    a = Embedded(_unit(3, 8, 8), torch.arange(3), 3, 2)
    b = Embedded(_unit(6, 8, 9), torch.arange(6) // 2, 3, 3)
    with pytest.raises(InputError, match="both be 2D or both be 3D"):
        search(a, b)


@pytest.mark.skipif(not faiss_available(), reason="faiss is optional and not installed")
def test_faiss_backend_agrees():
    queries, database = _unit(30, 16, 10), _unit(500, 16, 11)
    ours, theirs = topk_cosine(queries, database, k=5), topk_cosine(queries, database, k=5, backend="faiss")
    assert torch.equal(ours.index, theirs.index)


def test_union_interleaves_two_retrievals_without_repeats():
    from medgen.memorization.search import SearchResult, union

    first = SearchResult(torch.tensor([[0.9, 0.8, 0.7]]), torch.tensor([[4, 1, 2]]))
    second = SearchResult(torch.tensor([[0.99, 0.5, 0.4]]), torch.tensor([[1, 7, 4]]))
    merged = union(first, second, k=4)
    assert merged.index.tolist() == [[4, 1, 7, 2]]
    torch.testing.assert_close(merged.similarity, torch.tensor([[0.9, 0.99, 0.5, 0.7]]))

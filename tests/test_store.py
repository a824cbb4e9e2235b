import json

import duckdb
import pandas as pd
import pytest

from benchmark.errors import StoreError
from benchmark.store import SCHEMA_VERSION, Store, open_store


def _rows(method: str, n: int = 2) -> pd.DataFrame:
    return pd.DataFrame([{"suite": "s", "suite_hash": "h", "method": method, "hparams": "{}", "seed": 0,
                          "task": f"t{i}", "n": 10, "clean_acc": 0.5, "finetuned_acc": 0.9,
                          "pretrained_acc": 0.3, "normalized_acc": 0.55, "merge_seconds": 0.1} for i in range(n)])


def test_migrate_is_idempotent(tmp_path):
    store = open_store(tmp_path / "r.duckdb")
    assert store.migrate() == SCHEMA_VERSION
    assert store.read("SELECT max(version) v FROM schema_version").v[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    store = open_store(tmp_path / "r.duckdb")
    with store.connect() as con:
        con.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match="newer than this mergesec"):
        store.migrate()


def test_write_unit_replaces_never_duplicates(tmp_path):
    store = open_store(tmp_path / "r.duckdb")
    for _ in range(3):
        store.write_unit("k1", "merge", "h", "run", {"m": "a"}, {"merge_eval": _rows("a")}, 0.1)
    store.write_unit("k2", "merge", "h", "run", {"m": "b"}, {"merge_eval": _rows("b", 3)}, 0.1)
    counts = store.read("SELECT method, count(*) n FROM merge_eval GROUP BY method ORDER BY method")
    assert counts.n.tolist() == [2, 3]
    assert store.done_keys(["k1", "k2", "k3"]) == {"k1", "k2"}


def test_a_batch_writes_new_and_stored_units_once_with_the_digest_of_their_stored_rows(tmp_path):
    """`write_units` deletes only keys already stored (a new key has no rows anywhere) and digests only the
    tables a unit writes: re-written units, a key twice in one batch and a replaced version still leave
    exactly one copy, and every stored digest is what `recompute` reads back from all result tables."""
    from benchmark.store import UnitRows
    from benchmark.store.digest import recompute

    store = open_store(tmp_path / "r.duckdb")
    store.write_unit("k1", "merge", "h", "run", {}, {"merge_eval": _rows("a", 3)}, 0.1)
    store.write_units([UnitRows(k, "merge", "h", "run", {}, {"merge_eval": _rows(m, n)}, 0.1, r)
                       for k, m, n, r in [("k1", "a", 2, None), ("k2", "b", 1, None), ("k2", "b", 4, None),
                                          ("k3", "c", 2, ["k0"]), ("k4", "d", 5, ["k3"])]])
    counts = store.read("SELECT method, count(*) n FROM merge_eval GROUP BY method ORDER BY method")
    assert counts.method.tolist() == ["a", "b", "d"] and counts.n.tolist() == [2, 4, 5]
    with store.connect() as con:
        stored = dict(con.execute("SELECT unit_key, rows_digest FROM units_done").fetchall())
        assert set(stored) == {"k1", "k2", "k4"} and recompute(con, stored) == stored


def test_failed_unit_write_leaves_nothing(tmp_path):
    store = open_store(tmp_path / "r.duckdb")
    store.write_unit("k1", "merge", "h", "run", {}, {"merge_eval": _rows("a")}, 0.1)
    bad = _rows("a").drop(columns=["clean_acc"])  # NOT NULL column missing -> the insert fails
    with pytest.raises(duckdb.Error):
        store.write_unit("k1", "merge", "h", "run", {}, {"merge_eval": bad}, 0.1)
    assert len(store.read("SELECT * FROM merge_eval")) == 2  # old rows intact: the delete was rolled back


def test_unknown_table_refused(tmp_path):
    store = open_store(tmp_path / "r.duckdb")
    with pytest.raises(StoreError, match="unknown tables"):
        store.write_unit("k", "merge", "h", "run", {}, {"suites": _rows("a")}, 0.1)


def test_reader_is_read_only_and_parameterised(tmp_path):
    store = open_store(tmp_path / "r.duckdb")
    store.write_unit("k1", "merge", "h", "run", {}, {"merge_eval": _rows("a'; DROP TABLE merge_eval; --")}, 0.1)
    df = store.read("SELECT method FROM merge_eval WHERE method = ?", ["a'; DROP TABLE merge_eval; --"])
    assert len(df) == 2
    with pytest.raises(duckdb.Error):
        store.read("DELETE FROM merge_eval")


def test_missing_db_for_reader(tmp_path):
    with pytest.raises(StoreError, match="mergesec run"):
        Store(tmp_path / "none.duckdb").read("SELECT 1")


def test_upsert_metadata(tmp_path):
    store = open_store(tmp_path / "r.duckdb")
    row = {"name": "m", "kind": "merge", "source": "builtin", "hparams": {"a": 1}, "needs": [],
           "updated_at": pd.Timestamp.now()}
    store.upsert("methods", ["name", "kind"], row)
    store.upsert("methods", ["name", "kind"], {**row, "hparams": {"a": 2}})
    df = store.read("SELECT * FROM methods")
    assert len(df) == 1 and json.loads(df.hparams[0]) == {"a": 2}


def test_write_unit_replaces_an_earlier_version_in_the_same_transaction(tmp_path):
    store = open_store(tmp_path / "r.duckdb")
    store.write_unit("old", "merge", "h", "run", {}, {"merge_eval": _rows("a")}, 0.1)
    bad = _rows("a").drop(columns=["clean_acc"])
    with pytest.raises(duckdb.Error):
        store.write_unit("new", "merge", "h", "run", {}, {"merge_eval": bad}, 0.1, replaces=["old"])
    assert store.done_keys(["old", "new"]) == {"old"} and len(store.read("SELECT * FROM merge_eval")) == 2
    store.write_unit("new", "merge", "h", "run", {}, {"merge_eval": _rows("a", 3)}, 0.1, replaces=["old"])
    assert store.done_keys(["old", "new"]) == {"new"}
    assert store.read("SELECT DISTINCT unit_key FROM merge_eval").unit_key.tolist() == ["new"]

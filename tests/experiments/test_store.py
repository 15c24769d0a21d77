"""The append-only result store: durable appends, a torn last line, bad lines, duplicates."""

from __future__ import annotations

import json

import pytest

from pipelag.errors import PipelagError
from pipelag.experiments.store import ResultStore, make_record

SPEC = {"algo": "ppo", "env": "MinAtar/Breakout-v0", "delta": 1.0}


def rec(key: str, seed: int, ret: float = 1.0) -> dict:
    return make_record(key, seed, {"return": ret, "greedy": ret + 1}, SPEC, 0.5)


def test_append_and_read_back(tmp_path):
    store = ResultStore(tmp_path)
    assert store.read().records == []
    store.append([rec("a", 0, 1.5), rec("a", 1, 2.5)])
    store.append([rec("b", 0, 3.0)])
    c = store.read()
    assert [(r["key"], r["seed"], r["return"]) for r in c.records] == [("a", 0, 1.5), ("a", 1, 2.5), ("b", 0, 3.0)]
    assert c.finished() == {("a", 0), ("a", 1), ("b", 0)}
    assert c.by_key()["a"][1]["metrics"]["greedy"] == 3.5
    assert not c.torn_tail and c.bad_lines == []
    assert store.path.read_bytes().endswith(b"\n")


def test_a_torn_last_line_is_ignored_and_the_next_append_survives(tmp_path):
    store = ResultStore(tmp_path)
    store.append([rec("a", 0), rec("a", 1)])
    full = store.path.read_bytes()
    store.path.write_bytes(full[: len(full) - 20])  # a crash in the middle of writing the second record
    c = store.read()
    assert c.torn_tail and c.finished() == {("a", 0)} and c.bad_lines == []
    store.append([rec("a", 1, 7.0)])  # the rerun's record: must not be glued onto the torn line
    c = store.read()
    assert c.finished() == {("a", 0), ("a", 1)} and c.by_key()["a"][1]["return"] == 7.0
    assert not c.torn_tail and len(c.bad_lines) == 1  # the old torn line, now terminated, is counted


def test_garbage_and_invalid_lines_are_skipped_and_counted(tmp_path):
    store = ResultStore(tmp_path)
    store.append([rec("a", 0)])
    with open(store.path, "ab") as f:
        f.write(b"not json\n" + json.dumps({"key": "x"}).encode() + b"\n\n")
    store.append([rec("b", 0)])
    c = store.read()
    assert c.finished() == {("a", 0), ("b", 0)} and c.bad_lines == [2, 3]


def test_duplicates_keep_the_first_record(tmp_path):
    store = ResultStore(tmp_path)
    store.append([rec("a", 0, 1.0)])
    store.append([rec("a", 0, 9.0)])
    c = store.read()
    assert len(c.records) == 1 and c.records[0]["return"] == 1.0 and c.duplicates == 1


def test_records_need_a_numeric_return():
    with pytest.raises(PipelagError, match="no 'return'"):
        make_record("a", 0, {"score": 1.0}, SPEC, 0.0)
    with pytest.raises(PipelagError, match="not a number"):
        make_record("a", 0, {"return": "high"}, SPEC, 0.0)
    r = make_record("a", 0, {"return": float("nan"), "x": float("inf")}, SPEC, 0.0)
    assert r["return"] is None and r["metrics"]["x"] == "inf"  # strict JSON, no NaN tokens
    json.loads(json.dumps(r, allow_nan=False))


def test_run_dirs_are_per_key_and_seed_set(tmp_path):
    store = ResultStore(tmp_path)
    assert store.run_dir("k", [2, 0, 1]) == tmp_path / "runs" / "k" / "seeds-0-1-2"

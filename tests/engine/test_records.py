"""TaskRecord.to_dict, the public shape of a task: what it holds, and that it is a copy."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cc_executor.engine import TaskRecord
from cc_executor.engine.store import record_to_row, row_to_record
from cc_executor.protocol import TaskStatus

FIELDS = [f.name for f in dataclasses.fields(TaskRecord)]


def reference_dict(rec: TaskRecord) -> dict[str, Any]:
    """The shape to_dict had when it was built on dataclasses.asdict (the wire contract)."""
    d = dataclasses.asdict(rec)
    d.pop("start_ticks")
    d["status"] = str(rec.status)
    d["duration_s"] = rec.duration_s
    for k, v in d.pop("extra").items():
        d.setdefault(k, v)
    return d


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
optional_float = st.none() | st.floats(0, 2e9, allow_nan=False)
records = st.builds(
    TaskRecord,
    task_id=st.text(min_size=1, max_size=16),
    command=st.text() | st.lists(st.text(), max_size=3),
    argv=st.lists(st.text(), min_size=1, max_size=3),
    kind=st.sampled_from(["command", "claude"]),
    name=st.none() | st.text(),
    status=st.sampled_from(list(TaskStatus)),
    pid=st.none() | st.integers(1, 1 << 22),
    start_ticks=st.none() | st.integers(0, 2**63 - 1),
    created_at=st.floats(0, 2e9, allow_nan=False),
    started_at=optional_float,
    ended_at=optional_float,
    exit_code=st.none() | st.integers(-255, 255),
    stdout_bytes=st.integers(0, 2**63 - 1),
    error=st.none() | st.text(),
    # Keys that shadow a field ("status", "pid") must not replace it.
    extra=st.dictionaries(
        st.sampled_from(["result", "hooks", "status", "pid", "usage", "duration_s"]) | st.text(),
        json_values,
        max_size=4,
    ),
)


def without_duration(d: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in d.items() if k != "duration_s"]


@given(records)
def test_to_dict_has_the_public_shape(rec: TaskRecord) -> None:
    d = rec.to_dict()
    want = reference_dict(rec)
    assert without_duration(d) == without_duration(want)
    assert list(d) == list(want)  # the same keys in the same order
    if rec.started_at is None or rec.ended_at is not None:  # else it moves on with the clock
        assert d["duration_s"] == want["duration_s"]
    assert "start_ticks" not in d and "extra" not in d
    assert type(d["status"]) is str


@given(records)
def test_to_dict_is_a_copy(rec: TaskRecord) -> None:
    before = without_duration(reference_dict(rec))
    d = rec.to_dict()
    d["argv"].append("changed")
    if isinstance(d["command"], list):
        d["command"].append("changed")
    for k in rec.extra:
        if isinstance(d.get(k), dict) and k not in FIELDS:
            d[k]["changed"] = 1
        elif isinstance(d.get(k), list) and k not in FIELDS:
            d[k].append("changed")
    # argv included: a check for "changed" in rec.argv failed whenever Hypothesis, which
    # draws strings from this module's own literals, generated that very argument.
    assert without_duration(reference_dict(rec)) == before  # the record did not change


def test_a_later_change_to_the_record_does_not_reach_an_earlier_dict() -> None:
    rec = TaskRecord("t", ["a"], ["a"], extra={"hooks": {"pre_execute": [{"rc": 0}]}})
    d = rec.to_dict()
    rec.extra["hooks"]["post_execute"] = [{"rc": 1}]
    rec.extra["hooks"]["pre_execute"][0]["rc"] = 2
    rec.argv.append("b")
    assert d["hooks"] == {"pre_execute": [{"rc": 0}]} and d["argv"] == ["a"]


@given(records)
def test_a_row_reads_back_as_the_same_record(rec: TaskRecord) -> None:
    task_id, created_at, status, blob = record_to_row(rec)
    assert (task_id, created_at, status) == (rec.task_id, rec.created_at, str(rec.status))
    back = row_to_record(blob)
    assert back == rec and type(back.status) is TaskStatus


def test_a_row_without_a_newer_field_reads_with_its_default() -> None:
    blob = b'{"task_id":"old","command":"x","argv":["x"],"status":"completed","created_at":1.0}'
    rec = row_to_record(blob)
    assert rec.task_id == "old" and rec.status is TaskStatus.COMPLETED
    assert rec.extra == {} and rec.idle_timeout is None and rec.start_ticks is None

"""LineSplitter and ClaudeStreamState on the recorded real CLI output and on edge cases."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_executor.claude.stream import ClaudeStreamState, LineSplitter

SAMPLES = Path(__file__).parent / "samples"  # recorded from the real CLI 2.1.197
SAMPLE_FILES = sorted(SAMPLES.glob("*.json*"))


def split_all(data: bytes, chunk: int) -> list[bytes]:
    splitter = LineSplitter()
    lines: list[bytes] = []
    for i in range(0, len(data), chunk):
        lines += splitter.feed(data[i : i + chunk])
    return lines + splitter.flush()


def feed_all(data: bytes) -> tuple[ClaudeStreamState, list[dict[str, object]]]:
    state = ClaudeStreamState()
    events = []
    for line in split_all(data, 4096):
        event = state.feed_line(line)
        if event is not None:
            events.append(event)
    return state, events


# ------------------------------------------------------------------------ LineSplitter


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk", [1, 7, 64 * 1024, 10**9])
def test_samples_split_identically_for_any_chunk_size(path: Path, chunk: int) -> None:
    data = path.read_bytes()
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert split_all(data, chunk) == expected


def test_five_megabyte_line_in_64k_chunks() -> None:
    line = b'{"type":"assistant","x":"' + b"y" * (5 * 1024 * 1024) + b'"}'
    data = line + b"\n" + b'{"type":"result"}\n'
    start = time.monotonic()
    lines = split_all(data, 64 * 1024)
    assert time.monotonic() - start < 5
    assert len(lines) == 2
    assert lines[0] == line
    assert lines[1] == b'{"type":"result"}'


def test_partial_tail_is_buffered_until_newline_or_flush() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"ab") == []
    assert splitter.pending_bytes == 2
    assert splitter.feed(b"c\nde") == [b"abc"]
    assert splitter.feed(b"") == []
    assert splitter.flush() == [b"de"]
    assert splitter.flush() == []
    assert splitter.pending_bytes == 0


def test_empty_lines_are_kept() -> None:
    assert split_all(b"\n\na\n", 1) == [b"", b"", b"a"]


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_splitting_matches_bytes_split(data: bytes, chunk: int) -> None:
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert split_all(data, chunk) == expected


# ------------------------------------------------------------------------ ClaudeStreamState


def test_not_logged_in_sample_state_and_record() -> None:
    state, events = feed_all((SAMPLES / "not-logged-in.stream.jsonl").read_bytes())
    assert [(e["type"], e["subtype"]) for e in events] == [
        ("system", "init"),
        ("assistant", None),
        ("result", "success"),
    ]
    init = events[0]
    assert init["session_id"] == "6394e38c-4043-4dee-bc69-3e17530267f3"
    assert init["model"] == "claude-opus-4-8[1m]"
    assert isinstance(init["tools"], list) and "Bash" in init["tools"]
    assert events[1]["text"] == "Not logged in · Please run /login"
    assert events[1]["error"] == "authentication_failed"
    assert events[2]["is_error"] is True
    assert state.assistant_error == "authentication_failed"
    assert state.cwd == "/home/user/project"
    assert state.permission_mode == "default"
    assert state.api_key_source == "none"
    record = state.record_fields()
    assert record == {
        "result": "Not logged in · Please run /login",
        "claude_session_id": "6394e38c-4043-4dee-bc69-3e17530267f3",
        "is_error": True,
        "subtype": "success",
        "num_turns": 1,
        "duration_ms": 140,
        "total_cost_usd": 0,
        "usage": record["usage"],
        "model": "claude-opus-4-8[1m]",
        "permission_denials": [],
        "partial": False,
    }
    assert record["usage"]["output_tokens"] == 0


def test_json_output_sample_is_a_single_result() -> None:
    state, events = feed_all((SAMPLES / "not-logged-in.json").read_bytes())
    assert len(events) == 1 and events[0]["type"] == "result"
    assert state.record_fields()["claude_session_id"] == "644602a5-8045-408d-ba08-3206f115d6af"


def test_no_network_sample_counts_retries_and_is_partial() -> None:
    state, events = feed_all((SAMPLES / "no-network-api-key.stream.jsonl").read_bytes())
    retries = [e for e in events if e["subtype"] == "api_retry"]
    assert len(retries) == 6 == state.api_retries
    assert retries[0] == {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 1,
        "max_retries": 10,
        "retry_delay_ms": 515.6133072209743,
        "error": "unknown",
        "error_status": None,
    }
    assert state.last_retry_error == "unknown"
    assert state.api_key_source == "ANTHROPIC_API_KEY"
    record = state.record_fields()
    assert record["partial"] is True
    assert record["result"] is None
    assert record["claude_session_id"] == "716c063b-ab73-4934-a338-8e0b49bd3b1a"


def line(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_assistant_tool_use_and_user_tool_result_are_compacted() -> None:
    state = ClaudeStreamState()
    ev = state.feed_line(
        line(
            {
                "type": "assistant",
                "message": {
                    "model": "claude-x",
                    "content": [
                        {"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}},
                        {"type": "thinking", "thinking": "hmm"},
                    ],
                },
            }
        )
    )
    assert ev == {
        "type": "assistant",
        "subtype": None,
        "text": "Let me look.",
        "tool_uses": [{"name": "Bash", "id": "toolu_1"}],
    }
    long = "z" * 2000
    ev = state.feed_line(
        line(
            {
                "type": "user",
                "message": {
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": long},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "is_error": True,
                            "content": [{"type": "text", "text": "boom"}, {"type": "image"}],
                        },
                    ]
                },
            }
        )
    )
    assert ev is not None
    results = ev["tool_results"]
    assert results[0] == {"tool_use_id": "toolu_1", "is_error": False, "content": "z" * 500}
    assert results[1] == {"tool_use_id": "toolu_2", "is_error": True, "content": "boom\n[image]"}
    assert state.tool_uses == ["Bash"]
    assert state.model == "claude-x"
    record = state.record_fields()
    assert record["partial"] is True
    assert record["result"] == "Let me look."


def test_result_text_is_truncated_in_event_but_not_in_record() -> None:
    state = ClaudeStreamState()
    text = "r" * 5000
    ev = state.feed_line(
        line(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "num_turns": 2,
                "total_cost_usd": 0.5,
                "result": text,
                "session_id": "s",
            }
        )
    )
    assert ev == {
        "type": "result",
        "subtype": "success",
        "result": "r" * 2000,
        "is_error": False,
        "num_turns": 2,
        "total_cost_usd": 0.5,
    }
    assert state.record_fields()["result"] == text
    assert state.record_fields()["claude_session_id"] == "s"


def test_error_result_without_result_text_falls_back_to_errors() -> None:
    state = ClaudeStreamState()
    state.feed_line(
        line(
            {
                "type": "result",
                "subtype": "error_max_turns",
                "is_error": True,
                "errors": ["Reached maximum number of turns (1)"],
            }
        )
    )
    fields = state.record_fields()
    assert fields["result"] == "Reached maximum number of turns (1)"
    assert fields["subtype"] == "error_max_turns"
    assert fields["partial"] is False


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'"a string"', b"42", b"{broken", b"\xff\xfe"],
)
def test_plain_and_non_object_lines_are_counted(raw: bytes) -> None:
    state = ClaudeStreamState()
    assert state.feed_line(raw) is None
    assert state.plain_lines == 1


def test_blank_lines_are_ignored_silently() -> None:
    state = ClaudeStreamState()
    assert state.feed_line(b"   ") is None
    assert state.plain_lines == 0


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "stream_event", "event": {"type": "content_block_delta"}},
        {"type": "system", "subtype": "compact_boundary"},
        {"no_type": True},
        {"type": "assistant", "message": "not a dict"},
        {"type": "assistant", "message": {"content": "plain string content"}},
        {"type": "user", "message": {"content": None}},
        {"type": "result", "usage": [], "permission_denials": None, "num_turns": "x"},
        {"type": "system", "subtype": "init", "tools": "nope", "session_id": 5},
        {"type": "system", "subtype": "api_retry", "error": {"message": "x"}},
    ],
)
def test_odd_and_unknown_events_do_not_crash(obj: dict[str, object]) -> None:
    state = ClaudeStreamState()
    ev = state.feed_line(line(obj))
    assert ev is not None
    assert ev["type"] == obj.get("type")
    state.record_fields()


def test_unknown_type_gives_type_and_subtype_only() -> None:
    ev = ClaudeStreamState().feed_line(line({"type": "future", "subtype": "x", "big": [1] * 99}))
    assert ev == {"type": "future", "subtype": "x"}


def test_rate_limit_event_is_remembered() -> None:
    state = ClaudeStreamState()
    ev = state.feed_line(
        line(
            {
                "type": "rate_limit_event",
                "rate_limit_info": {
                    "status": "rejected",
                    "resetsAt": 1790000000,
                    "rateLimitType": "five_hour",
                },
            }
        )
    )
    assert ev == {
        "type": "rate_limit_event",
        "subtype": None,
        "status": "rejected",
        "resets_at": 1790000000,
        "rate_limit_type": "five_hour",
    }
    assert state.rate_limit_info is not None

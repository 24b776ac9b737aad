"""Frames cut from a read or a batch: bounded by count and bytes, every event once and in order, each frame as
full as its bounds allow, its batch the exact JSON of its items."""

import msgspec

from syncapp.protocol import pages, wire
from syncapp.v03 import codec


def item(seq_num, args_bytes):
    event = wire.Event(
        name="v1.TodoCreated",
        args=msgspec.Raw(msgspec.json.encode({"text": "x" * args_bytes})),
        seqNum=seq_num,
        parentSeqNum=seq_num - 1,
        clientId="client",
        sessionId="session",
    )
    return codec.pull_item(event, "2026-12-06T14:00:00.000Z")


def assert_runs(items, runs, max_events, max_bytes):
    decoded = [msgspec.json.decode(batch) for _, batch in runs]
    assert [len(run) for run in decoded] == [count for count, _ in runs]
    assert [entry for run in decoded for entry in run] == msgspec.json.decode(msgspec.json.encode(items))
    start = 0
    for count, batch in runs:
        run = items[start : start + count]
        assert bytes(batch) == msgspec.json.encode(run)
        assert 1 <= count <= max_events
        assert count == 1 or len(batch) - 2 <= max_bytes, "a frame of several events is over the byte bound"
        following = items[start + count : start + count + 1]
        if following:
            fuller = msgspec.json.encode(run + following)
            assert count == max_events or len(fuller) - 2 > max_bytes, "a frame was cut before it was full"
        start += count
    assert start == len(items)


def test_small_events_are_cut_by_count_alone():
    items = [item(n, 50) for n in range(1, 251)]
    runs = pages.encoded_runs(items, 100)
    assert [count for count, _ in runs] == [100, 100, 50]
    assert_runs(items, runs, 100, pages.MAX_PAGE_BYTES)


def test_large_events_are_cut_by_bytes_and_the_cuts_after_them_stay_as_full_as_allowed():
    items = [item(n, 50) for n in range(1, 131)] + [item(n, 30_000) for n in range(131, 201)]
    items += [item(n, 400_000) for n in range(201, 204)] + [item(n, 50) for n in range(204, 420)]
    items += [item(420, 1_200_000)] + [item(n, 50) for n in range(421, 430)]
    runs = pages.encoded_runs(items, 100)
    assert_runs(items, runs, 100, pages.MAX_PAGE_BYTES)
    assert 1 in [count for count, _ in runs], "the event over the byte bound travels alone"
    assert [count for count, _ in runs][:2] == [100, 30 + 29], "the first cut by bytes is as full as it can be"


def test_no_events_are_one_empty_run():
    assert pages.encoded_runs([], 100) == [(0, msgspec.Raw(b"[]"))]


def test_a_push_frame_is_the_reference_s_pull_res_byte_for_byte():
    event = wire.Event(name="e", args=msgspec.Raw(b'{"a":1}'), seqNum=3, parentSeqNum=2, clientId="c", sessionId="s")
    [frame] = codec.push_frames([event], "2026-12-06T14:00:00.000Z", "req-1")
    assert codec.encode(frame) == (
        '{"_tag":"WSMessage.PullRes","batch":[{"eventEncoded":{"name":"e","args":{"a":1},"seqNum":3,'
        '"parentSeqNum":2,"clientId":"c","sessionId":"s"},"metadata":{"_tag":"Some","value":'
        '{"createdAt":"2026-12-06T14:00:00.000Z"}}}],"requestId":{"context":"push","requestId":"req-1"},'
        '"remaining":0}'
    )

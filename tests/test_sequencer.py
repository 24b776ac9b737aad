from syncapp.sequencer import DROP, FORWARD, REPAIR, Sequencer


def test_unknown_position_forwards_as_the_reference_does():
    sequencer = Sequencer()
    assert sequencer.on_broadcast(5, 6) == FORWARD
    assert sequencer.cursor == 6


def test_contiguous_forwarded_duplicates_dropped_gaps_repaired():
    sequencer = Sequencer()
    sequencer.sent(3)
    assert sequencer.on_broadcast(4, 5) == FORWARD
    assert sequencer.on_broadcast(4, 5) == DROP
    assert sequencer.on_broadcast(2, 3) == DROP
    assert sequencer.on_broadcast(8, 9) == REPAIR
    assert sequencer.on_broadcast(5, 7) == REPAIR
    assert sequencer.cursor == 5


def test_client_position_only_moves_forward_until_forgotten():
    sequencer = Sequencer()
    sequencer.client_has(7)
    sequencer.client_has(3)
    assert sequencer.cursor == 7
    sequencer.forget()
    assert sequencer.cursor is None

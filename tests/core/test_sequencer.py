from syncapp.core.sequencer import DROP, FORWARD, REPAIR, Sequencer


def test_nothing_is_forwarded_before_the_client_says_where_it_stands():
    """A reconnected 0.3.1 client would take any batch as the next one, across a gap."""
    sequencer = Sequencer()
    assert sequencer.on_broadcast(5, 6) == DROP
    assert sequencer.on_broadcast(1, 1) == DROP
    assert sequencer.cursor is None
    sequencer.client_has(4)
    assert sequencer.on_broadcast(5, 6) == FORWARD


def test_contiguous_forwarded_duplicates_dropped_gaps_repaired():
    sequencer = Sequencer()
    sequencer.sent(3)
    assert sequencer.on_broadcast(4, 5) == FORWARD
    assert sequencer.on_broadcast(4, 5) == DROP
    assert sequencer.on_broadcast(2, 3) == DROP
    assert sequencer.on_broadcast(8, 9) == REPAIR
    assert sequencer.on_broadcast(5, 7) == REPAIR
    assert sequencer.cursor == 5


def test_client_position_only_moves_forward_until_the_store_restarts():
    sequencer = Sequencer()
    sequencer.client_has(7)
    sequencer.client_has(3)
    assert sequencer.cursor == 7
    sequencer.restart()
    assert sequencer.on_broadcast(1, 2) == FORWARD

"""When the hub may keep a store's events off Redis (``syncapp.fanout.followers``): the rules, on a clock of the test's.

The hub's behaviour against the real Redis is in ``tests/fanout/test_pubsub_hub.py``; these are the orderings of
replies, notices and joins that Redis cannot be made to produce on demand.
"""

from syncapp.fanout.followers import GRACE_SECONDS, Followers


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def listening_hub_alone_in(store_id, *, clock):
    """Followers of a hub that listens and has proven its own subscription of ``store_id``."""
    followers = Followers(clock=clock)
    followers.listening = True
    followers.joined(store_id)
    followers.heard_own(store_id, followers.joins)
    return followers


def test_a_publish_that_reached_only_this_process_keeps_the_store_and_one_that_reached_another_publishes_again():
    clock = Clock()
    followers = listening_hub_alone_in("s", clock=clock)
    assert followers.reached("s", 1, followers.sending(), follows_here=True) == 0
    assert followers.keeps("s")
    followers.kept("s", 7)
    assert followers.reached("s", 2, followers.sending(), follows_here=True) == 7, "the kept head was not returned"
    assert not followers.keeps("s")


def test_a_store_without_sockets_here_is_kept_only_while_nobody_subscribes():
    followers = Followers(clock=Clock())
    followers.listening = True
    followers.reached("http-only", 1, followers.sending(), follows_here=False)
    assert not followers.keeps("http-only")
    followers.reached("http-only", 0, followers.sending(), follows_here=False)
    assert followers.keeps("http-only")


def test_a_follower_counted_by_redis_is_heeded_even_when_no_count_could_be_trusted():
    """A notice about another store in flight, the hub no longer listening: publishing is always safe, so a count
    above this process's own always ends the keeping."""
    clock = Clock()
    followers = listening_hub_alone_in("s", clock=clock)
    followers.reached("s", 1, followers.sending(), follows_here=True)
    followers.kept("s", 3)
    sent_at = followers.sending()
    followers.noticed("other-store")
    followers.listening = False
    assert followers.reached("s", 2, sent_at, follows_here=True) == 3
    assert not followers.keeps("s")


def test_a_notice_about_one_store_does_not_distrust_the_counts_of_another():
    clock = Clock()
    followers = listening_hub_alone_in("s", clock=clock)
    sent_at = followers.sending()
    followers.noticed("other-store")
    followers.reached("s", 1, sent_at, follows_here=True)
    assert followers.keeps("s")


def test_a_count_sent_before_a_notice_about_the_store_or_within_its_grace_keeps_nothing():
    clock = Clock()
    followers = listening_hub_alone_in("s", clock=clock)
    sent_at = followers.sending()
    clock.now += 0.01
    followers.noticed("s")
    clock.now += 2 * GRACE_SECONDS
    followers.reached("s", 1, sent_at, follows_here=True)
    assert not followers.keeps("s"), "a reply to a publish sent before the notice was trusted"
    followers.noticed("s")
    clock.now += GRACE_SECONDS / 2
    followers.reached("s", 1, followers.sending(), follows_here=True)
    assert not followers.keeps("s"), "a count within the notice's grace was trusted"
    clock.now += GRACE_SECONDS
    followers.reached("s", 1, followers.sending(), follows_here=True)
    assert followers.keeps("s")


def test_an_own_message_sent_before_the_stores_latest_join_proves_no_subscription():
    """The one subscriber Redis counted may be another process until this one's own subscription is proven."""
    clock = Clock()
    followers = listening_hub_alone_in("s", clock=clock)
    joins_before = followers.joins
    followers.left("s")
    followers.joined("s")
    followers.heard_own("s", joins_before)
    followers.reached("s", 1, followers.sending(), follows_here=True)
    assert not followers.keeps("s")
    followers.heard_own("s", followers.joins)
    followers.reached("s", 1, followers.sending(), follows_here=True)
    assert followers.keeps("s")


def test_a_notice_returns_every_kept_event_and_a_reset_forgets_them():
    clock = Clock()
    followers = listening_hub_alone_in("s", clock=clock)
    followers.reached("s", 1, followers.sending(), follows_here=True)
    followers.kept("s", 5)
    assert followers.unannounced() == {"s": 5}
    followers.kept("s", 6)
    followers.reset("s")
    assert not followers.keeps("s") and followers.unannounced() == {}
    followers.reached("s", 1, followers.sending(), follows_here=True)
    followers.kept("s", 2)
    assert followers.noticed("s") == 2 and not followers.keeps("s")


def test_after_forgetting_nothing_is_kept_until_the_hub_listens_again_and_replies_sent_before_are_not_trusted():
    clock = Clock()
    followers = listening_hub_alone_in("s", clock=clock)
    followers.reached("s", 1, followers.sending(), follows_here=True)
    followers.kept("s", 4)
    sent_before = followers.sending()
    clock.now += 0.01
    assert followers.forget() == {"s": 4}
    followers.heard_own("s", followers.joins)
    followers.reached("s", 1, followers.sending(), follows_here=True)
    assert not followers.keeps("s"), "kept while not listening"
    followers.listening = True
    followers.reached("s", 1, sent_before, follows_here=True)
    assert not followers.keeps("s"), "a reply to a publish sent before the forgetting was trusted"
    clock.now += 0.01
    followers.reached("s", 1, followers.sending(), follows_here=True)
    assert followers.keeps("s")

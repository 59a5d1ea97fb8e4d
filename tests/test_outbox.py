"""The outbox's eviction policy as pure logic: what a full outbox keeps of alert lifecycles while the broker is away."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

from edge_depth.mqtt.outbox import AlertTag, Outbox, alert_tag


@dataclass(frozen=True)
class Ev:
    """One published alert event (or, with ``tag`` None, any other QoS 1 message)."""

    n: int
    tag: AlertTag | None

    def __repr__(self) -> str:
        return f"#{self.n}:{self.tag.id}/{self.tag.type}" if self.tag else f"#{self.n}:plain"


class Stream:
    """Numbers the events in publication order and puts them into an outbox; with ``check``, asserts after each
    put that what it evicted was what mattered least at that moment."""

    def __init__(self, outbox: Outbox[Ev], *, check: bool = False) -> None:
        self.outbox = outbox
        self.published: list[Ev] = []
        self.check = check

    def __call__(self, alert_id: str, step: str, severity: str = "warning") -> Ev:
        tag = alert_tag(json.dumps({"id": alert_id, "type": step, "severity": severity}).encode())
        assert tag is not None
        return self.put(tag)

    def put(self, tag: AlertTag | None) -> Ev:
        event = Ev(len(self.published), tag)
        self.published.append(event)
        before = [*self.outbox, event]
        coalesced = self.outbox.coalesced
        eviction = self.outbox.put(event, tag)
        # Only evictions of whole lifecycles or ends are decisions to check; a step of a lifecycle that already
        # went is refused without one.
        if self.check and (eviction.lifecycles or eviction.ends):
            self._check_eviction(before, list(self.outbox), self.outbox.coalesced - coalesced)
        return event

    def _check_eviction(self, before: list[Ev], after: list[Ev], coalesced: int) -> None:
        assert len(after) <= self.outbox.capacity
        removed = [e for e in before if e not in after]
        replaced = [e for e in removed if is_update(e) and any(is_update(a) and a.tag == e.tag for a in after)]
        assert len(replaced) >= coalesced
        evicted = [e for e in removed if e not in replaced[:coalesced]]
        if any(not is_update(e) for e in evicted):
            # A new, an end or another message went: no update may be left, and nothing that matters less.
            assert not [a for a in after if is_update(a)], (evicted, after)
            floor = min(rank(a) for a in after) if after else len(SEVERITIES)
            assert all(rank(e) <= floor for e in evicted), (evicted, after)


def is_update(event: Ev) -> bool:
    return event.tag is not None and event.tag.type == "update"


def rank(event: Ev) -> int:
    """Other messages rank like info alerts."""
    return RANK[event.tag.severity] if event.tag else 0


SEVERITIES = ("info", "warning", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}


def steps(events: Iterable[Ev]) -> list[tuple[str, str]]:
    return [(e.tag.id, e.tag.type) for e in events if e.tag is not None]


def test_updates_are_coalesced_to_the_latest_per_alert() -> None:
    put = Stream(Outbox(100))
    put("a", "new")
    put("a", "update")
    put("b", "new")
    put("a", "update")
    last_a = put("a", "update")
    put("b", "update")
    kept = put.outbox.drain()
    assert steps(kept) == [("a", "new"), ("b", "new"), ("a", "update"), ("b", "update")]
    assert last_a in kept
    assert (put.outbox.coalesced, put.outbox.dropped) == (2, 0)


def test_the_incident_two_critical_falls_survive_a_flood_of_obstacle_updates() -> None:
    # max_queued_alerts 10, a 60 s outage: obstacle alerts update every few seconds, two falls happen.
    put = Stream(Outbox(10))
    put("obstacle-1", "new")
    put("fall-1", "new", "critical")
    for zone in range(2, 6):
        put(f"obstacle-{zone}", "new")
    for _ in range(20):
        for zone in range(1, 6):
            put(f"obstacle-{zone}", "update")
    put("fall-1", "end", "critical")
    put("fall-2", "new", "critical")
    put("obstacle-1", "end")
    put("fall-2", "end", "critical")
    kept = steps(put.outbox.drain())
    for fall in ("fall-1", "fall-2"):
        assert [s for s in kept if s[0] == fall] == [(fall, "new"), (fall, "end")]
    assert ("obstacle-1", "new") in kept
    assert ("obstacle-1", "end") in kept
    assert len(kept) == 10
    assert_whole(kept, delivered=set())


def test_updates_go_before_any_new_or_end_whatever_their_severity() -> None:
    put = Stream(Outbox(3))
    put("fall", "new", "critical")
    put("fall", "update", "critical")
    put("porch", "new", "info")
    put("porch", "end", "info")
    assert steps(put.outbox.drain()) == [("fall", "new"), ("porch", "new"), ("porch", "end")]
    assert put.outbox.dropped == 1


def test_warnings_go_before_criticals_and_the_oldest_warning_first() -> None:
    put = Stream(Outbox(4))
    put("w1", "new")
    put("c1", "new", "critical")
    put("w2", "new")
    put("c2", "new", "critical")
    put("c3", "new", "critical")  # full: w1 (oldest warning) goes
    put("c4", "new", "critical")  # then w2
    evicted = put.outbox.put(Ev(99, AlertTag("w3", "new", "warning")), AlertTag("w3", "new", "warning"))
    assert not evicted.kept  # a warning arriving at a queue of criticals is the one to go
    assert (evicted.dropped, evicted.lifecycles) == (1, 1)
    # Among criticals, the oldest goes.
    put("c5", "new", "critical")
    assert steps(put.outbox.drain()) == [(c, "new") for c in ("c2", "c3", "c4", "c5")]


def test_a_lifecycle_that_went_stays_gone_even_after_the_broker_is_back() -> None:
    put = Stream(Outbox(2))
    put("c1", "new", "critical")
    put("c2", "new", "critical")
    put("w", "new")  # evicted at once
    put("w", "update")
    assert put.outbox.drain() == [put.published[0], put.published[1]]
    # Connected again: the publisher asks before sending. The update and the end of "w" are refused (a
    # subscriber never heard of "w"), everything else passes; after its end, "w" is forgotten.
    assert not put.outbox.admit(AlertTag("w", "update", "warning"))
    assert put.outbox.admit(AlertTag("c1", "end", "critical"))
    assert not put.outbox.admit(AlertTag("w", "end", "warning"))
    assert put.outbox.admit(AlertTag("w", "end", "warning"))
    assert put.outbox.admit(None)
    assert put.outbox.dropped == 4  # w/new, w/update (queued), w/update and w/end (after)


def test_an_end_whose_new_was_delivered_is_kept_over_a_whole_lifecycle_of_the_same_severity() -> None:
    put = Stream(Outbox(2))
    put("announced", "end")  # its new went out before the outage
    put("unseen", "new")
    put("later", "new")  # full: "unseen" goes whole, the end of "announced" stays
    assert steps(put.outbox.drain()) == [("announced", "end"), ("later", "new")]


def test_a_critical_alert_outranks_the_end_of_a_warning() -> None:
    put = Stream(Outbox(2))
    put("announced", "end")
    put("fall", "new", "critical")
    put("fall", "end", "critical")
    assert steps(put.outbox.drain()) == [("fall", "new"), ("fall", "end")]


def test_other_messages_go_oldest_first() -> None:
    put = Stream(Outbox(3))
    for _ in range(5):
        put.put(None)
    kept = put.outbox.drain()
    assert [e.n for e in kept] == [2, 3, 4]
    assert put.outbox.dropped == 2


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"id": "a", "type": "new"}',
        b'{"id": "a", "type": "opened", "severity": "warning"}',
        b'{"id": "a", "type": ["new"], "severity": "warning"}',
        b'{"id": 7, "type": "new", "severity": "warning"}',
    ],
)
def test_what_is_not_an_alert_event_has_no_tag(payload: bytes) -> None:
    assert alert_tag(payload) is None


def test_an_alert_event_has_its_tag() -> None:
    payload = json.dumps({"id": "porch-door-1", "type": "end", "kind": "fall", "severity": "critical"}).encode()
    assert alert_tag(payload) == AlertTag("porch-door-1", "end", "critical")


# --- invariants over random outages ---


def random_outage(rng: random.Random, stream: Stream, length: int) -> set[str]:
    """Publishes ``length`` events of random alerts during an outage; returns the ids whose ``new`` was
    delivered before it (their ``update``s and ``end`` may arrive without a ``new``)."""
    open_: dict[str, str] = {}
    delivered: set[str] = set()
    for i in range(rng.randrange(4)):
        alert_id, severity = f"before-{i}", rng.choice(SEVERITIES)
        open_[alert_id] = severity
        delivered.add(alert_id)
    serial = 0
    for _ in range(length):
        roll = rng.random()
        if not open_ or roll < 0.25:
            alert_id, severity = f"a{serial}", rng.choice(SEVERITIES)
            serial += 1
            open_[alert_id] = severity
            stream(alert_id, "new", severity)
        elif roll < 0.85:
            alert_id = rng.choice(sorted(open_))
            stream(alert_id, "update", open_[alert_id])
        elif roll < 0.95:
            alert_id = rng.choice(sorted(open_))
            stream(alert_id, "end", open_.pop(alert_id))
        else:
            stream.put(None)
    return delivered


def assert_whole(pairs: Sequence[tuple[str, str]], delivered: set[str]) -> None:
    """No update or end without its new before it, unless the new was delivered before the outage."""
    seen_new: set[str] = set()
    for alert_id, step in pairs:
        if step == "new":
            seen_new.add(alert_id)
        else:
            assert alert_id in seen_new or alert_id in delivered, f"{step} of {alert_id} without its new: {pairs}"


@pytest.mark.parametrize("seed", range(200))
def test_random_outages_keep_the_policy(seed: int) -> None:
    rng = random.Random(seed)
    capacity = rng.choice((1, 2, 3, 5, 10, 20))
    stream = Stream(Outbox(capacity), check=True)
    delivered = random_outage(rng, stream, rng.randrange(1, 120))
    kept = stream.outbox.drain()
    published = stream.published

    # Bounded, and a subsequence of what was published (publication order kept).
    assert len(kept) <= capacity
    numbers = [e.n for e in kept]
    assert numbers == sorted(numbers)
    # Every lifecycle whole: no update or end without its new, unless the new was delivered before.
    assert_whole(steps(kept), delivered)
    # At most one update per alert, and it is the latest one published.
    updates = [e for e in kept if e.tag is not None and e.tag.type == "update"]
    assert len({e.tag.id for e in updates if e.tag}) == len(updates)
    for e in updates:
        assert e.tag is not None
        later = [p for p in published if p.tag == e.tag and p.n > e.n]
        assert not later, f"update {e} kept, a later one dropped"

    # Counters add up: each event is kept, coalesced or dropped.
    assert len(published) == len(kept) + stream.outbox.coalesced + stream.outbox.dropped


def test_the_outbox_refuses_a_zero_capacity() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Outbox[int](0)

"""What the MQTT publisher keeps of its QoS 1 messages while the broker is away: a bounded outbox with a policy.

Pure logic (no paho, no clock). Alert events (``AlertTag``: id, type, severity) are grouped by alert id into
lifecycles (``new``, updates, ``end``); anything else is a lifecycle of its own. The policy:

* Updates are coalesced at once: only the latest per alert id is kept, moved to the end (an update is a
  snapshot; an older one says nothing the newer does not).
* When full, the outbox evicts, in this order: an ``update`` (info before warning before critical, oldest
  first; never a ``new`` or ``end`` while an update is left); then, severity by severity (info, warning,
  critical), a whole lifecycle whose ``new`` is still queued (the subscriber never hears of it; oldest first),
  and only then the queued ``end`` of a lifecycle of that severity whose ``new`` was already delivered (its
  subscriber keeps it open, so this comes last within a severity; a critical alert still outranks it).
* A lifecycle evicted while its ``new`` was queued (or before it came) stays evicted: its later updates and
  its ``end`` are refused too, also after the broker is back (``admit``), so that a subscriber never sees an
  ``update`` or ``end`` without the ``new``.

What is kept stays in publication order: the outbox sends a subsequence of what was published.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

LifecycleStep = Literal["new", "update", "end"]

_STEPS: dict[object, LifecycleStep] = {"new": "new", "update": "update", "end": "end"}
_RANKS = {"info": 0, "warning": 1, "critical": 2}
_UNKNOWN_RANK = 1  # an alert with a severity we do not know is kept like a warning
_PLAIN_RANK = 0  # a QoS 1 message that is not an alert event goes first, like an info alert
_LEVELS = range(len(_RANKS))
_GONE_MIN = 1000  # lifecycles remembered as evicted, at least: their ``end`` may come long after


@dataclass(frozen=True, slots=True)
class AlertTag:
    """What the outbox needs of an alert event: its lifecycle (``id``), step and severity."""

    id: str
    type: LifecycleStep
    severity: str


def alert_tag(payload: bytes) -> AlertTag | None:
    """The tag of an alert event's JSON (``edge_depth.alerts.events``); None for anything else."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    alert_id, raw_step, severity = obj.get("id"), obj.get("type"), obj.get("severity")
    step = _STEPS.get(raw_step) if isinstance(raw_step, str) else None
    if not isinstance(alert_id, str) or not isinstance(severity, str) or step is None:
        return None
    return AlertTag(alert_id, step, severity)


@dataclass(frozen=True, slots=True)
class Eviction:
    """What one ``put`` did: whether the item stayed, how many entries it cost (its own included), and how many
    whole lifecycles went and queued ``end`` messages were lost among them."""

    kept: bool
    dropped: int = 0
    lifecycles: int = 0
    ends: int = 0


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    key: str
    step: str


@dataclass(slots=True)
class _Lifecycle:
    rank: int
    whole: bool
    """Its ``new`` is queued (or it is not an alert): it can go without a trace."""
    seqs: list[int] = field(default_factory=list)
    update: int | None = None
    ended: bool = False


class Outbox(Generic[T]):
    """At most ``capacity`` items; see the module docstring for what goes first. Not thread-safe."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"outbox capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.dropped = 0
        """Items evicted or refused since creation (coalesced updates not included)."""
        self.coalesced = 0
        """Updates replaced by a later update of the same alert."""
        self._seq = 0
        self._entries: dict[int, _Entry[T]] = {}  # by sequence number: insertion order is publication order
        self._lifecycles: dict[str, _Lifecycle] = {}
        # Per severity rank, keys in the order their candidate entry was queued: eviction takes the first.
        self._updates: list[dict[str, None]] = [{} for _ in _LEVELS]
        self._whole: list[dict[str, None]] = [{} for _ in _LEVELS]
        self._tails: list[dict[str, None]] = [{} for _ in _LEVELS]
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._gone_max = max(_GONE_MIN, 4 * capacity)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[T]:
        """What is queued now, in publication order (the outbox is not changed)."""
        return (entry.item for entry in self._entries.values())

    def admit(self, tag: AlertTag | None) -> bool:
        """False (counted as dropped) for a step of a lifecycle that was evicted: it is not to be sent at all."""
        if tag is None or tag.id not in self._gone:
            return True
        self.dropped += 1
        if tag.type == "end":
            del self._gone[tag.id]  # nothing more of it will come
        return False

    def put(self, item: T, tag: AlertTag | None) -> Eviction:
        """Queues ``item``, then evicts until within capacity (possibly ``item`` itself)."""
        before = self.dropped
        if not self.admit(tag):
            return Eviction(kept=False, dropped=self.dropped - before)
        seq = self._seq
        self._seq += 1
        if tag is None:
            key, step, rank = f"\0{seq}", "plain", _PLAIN_RANK
        else:
            key, step, rank = tag.id, tag.type, _RANKS.get(tag.severity, _UNKNOWN_RANK)
        life = self._lifecycles.get(key)
        if life is None:
            life = _Lifecycle(rank, whole=step in ("new", "plain"))
            self._lifecycles[key] = life
            (self._whole if life.whole else self._tails)[life.rank][key] = None
        if step == "update" and life.update is not None:
            self._remove_entry(key, life, life.update)
            self._updates[life.rank].pop(key)
            self.coalesced += 1
        self._entries[seq] = _Entry(item, key, step)
        life.seqs.append(seq)
        if step == "update":
            life.update = seq
            self._updates[life.rank][key] = None
        elif step == "end":
            life.ended = True
        lifecycles = ends = 0
        while len(self._entries) > self.capacity:
            kind = self._evict()
            lifecycles += kind == "lifecycle"
            ends += kind == "end"
        return Eviction(seq in self._entries, self.dropped - before, lifecycles, ends)

    def drain(self) -> list[T]:
        """Everything queued, in publication order; the outbox is empty afterwards (it remembers evictions)."""
        items = [entry.item for entry in self._entries.values()]
        self._entries.clear()
        self._lifecycles.clear()
        for index in (*self._updates, *self._whole, *self._tails):
            index.clear()
        return items

    def _evict(self) -> str:
        for rank in _LEVELS:
            if self._updates[rank]:
                key = next(iter(self._updates[rank]))
                life = self._lifecycles[key]
                assert life.update is not None
                self._remove_entry(key, life, life.update)
                del self._updates[rank][key]
                self.dropped += 1
                if not life.seqs:  # an update was all that was queued of an already announced alert
                    self._forget(key, life)
                return "update"
        for rank in _LEVELS:
            for index, kind in ((self._whole, "lifecycle"), (self._tails, "end")):
                if index[rank]:
                    key = next(iter(index[rank]))
                    life = self._lifecycles[key]
                    for seq in life.seqs:
                        del self._entries[seq]
                    self.dropped += len(life.seqs)
                    if not life.ended and not key.startswith("\0"):
                        self._remember_gone(key)
                    self._forget(key, life)
                    return kind
        raise AssertionError("evicting from an empty outbox")

    def _remove_entry(self, key: str, life: _Lifecycle, seq: int) -> None:
        del self._entries[seq]
        life.seqs.remove(seq)
        if life.update == seq:
            life.update = None

    def _forget(self, key: str, life: _Lifecycle) -> None:
        del self._lifecycles[key]
        (self._whole if life.whole else self._tails)[life.rank].pop(key, None)
        self._updates[life.rank].pop(key, None)

    def _remember_gone(self, key: str) -> None:
        self._gone[key] = None
        while len(self._gone) > self._gone_max:
            self._gone.popitem(last=False)

"""``ConsumerRebalanceListener``: kafka-python's callback interface for group rebalances.

The consumer calls these from ``poll`` (and ``close``/``unsubscribe``), in its own thread, as Kafka
does: ``on_partitions_revoked`` before partitions are taken away (commit here), ``on_partitions_lost``
when the member was fenced or evicted and no longer owns them (a commit would fail), and
``on_partitions_assigned`` after new partitions are added (their positions are set). With the
cooperative-sticky assignor only the partitions that move are revoked or assigned.
"""

from __future__ import annotations

from pylog.types import TopicPartition


class ConsumerRebalanceListener:
    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions this member gives up; commit their progress here."""

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions this member now owns."""

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Partitions already owned by others (this member was fenced); defaults to revoked."""
        self.on_partitions_revoked(lost)

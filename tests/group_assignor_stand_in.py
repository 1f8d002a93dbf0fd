"""TEMPORARY stand-in for pylog/embedded/assignors.py (written in parallel on branch ``assignors``):
installed only when the real module is missing, so the group tests run before the merge."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

from pylog.types import TopicPartition


def install() -> None:
    try:
        import pylog.embedded.assignors  # noqa: F401
    except ImportError:
        pass
    else:
        return

    @dataclass(frozen=True)
    class MemberSubscription:
        member_id: str
        group_instance_id: str | None = None
        topics: tuple[str, ...] = ()
        owned: tuple[TopicPartition, ...] = ()
        generation: int = -1

    def assign(strategy, members, partitions_per_topic):
        out: dict[str, list[TopicPartition]] = {m.member_id: [] for m in members}
        everything = [
            TopicPartition(t, p) for t in sorted(partitions_per_topic) for p in range(partitions_per_topic[t])
        ]
        quota = -(-len(everything) // max(len(members), 1))
        taken = set()
        for m in members:
            for tp in m.owned:
                if (
                    tp.topic in m.topics
                    and tp in everything
                    and tp not in taken
                    and len(out[m.member_id]) < quota
                ):
                    out[m.member_id].append(tp)
                    taken.add(tp)
        for tp in everything:
            if tp in taken:
                continue
            candidates = [m for m in members if tp.topic in m.topics]
            best = min(candidates, key=lambda m: len(out[m.member_id]))
            out[best.member_id].append(tp)
        return out

    module = types.ModuleType("pylog.embedded.assignors")
    module.MemberSubscription = MemberSubscription  # type: ignore[attr-defined]
    module.assign = assign  # type: ignore[attr-defined]
    module.ASSIGNORS = ("range", "roundrobin", "cooperative-sticky")  # type: ignore[attr-defined]
    sys.modules["pylog.embedded.assignors"] = module

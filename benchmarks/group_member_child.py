"""A group member in its own process, for benchmarks/test_bench_groups.py.

``python group_member_child.py LOG_DIR GROUP STRATEGY``: joins GROUP on topic ``t`` and follows
rebalances the way ``pylog.Consumer`` does (idle until the member's wake-up callback, then
``member.poll``, the change applied, ``revoked()`` called); prints ``held <count> <CLOCK_MONOTONIC
seconds>`` after every change of its holdings. ``leave`` on stdin closes the member (a clean leave);
end of stdin closes it too.
"""

from __future__ import annotations

import sys
import threading
import time

import pylog


def main() -> None:
    log_dir, group, strategy = sys.argv[1:4]
    log = pylog.open(log_dir)
    member = log._backend.group_member(
        group_id=group,
        assignors=[strategy],
        session_timeout_ms=30_000,
        heartbeat_interval_ms=3_000,
        max_poll_interval_ms=300_000,
    )
    member.subscribe({"t"}, None)
    wake = threading.Event()
    member.set_wakeup(wake.set)
    running = True
    held: set = set()

    def drive() -> None:
        while running:
            change = member.poll(0)
            if change is not None:
                held.difference_update(change.lost | change.revoked)
                if change.revoked:
                    member.revoked(change.revoked)
                held.update(change.assigned)
                print(f"held {len(held)} {time.clock_gettime(time.CLOCK_MONOTONIC):.9f}", flush=True)
            wake.wait(1.0)
            wake.clear()

    driver = threading.Thread(target=drive)
    driver.start()
    for line in sys.stdin:
        if line.strip() == "leave":
            break
    running = False
    wake.set()
    driver.join()
    member.close()
    log.close()


if __name__ == "__main__":
    main()

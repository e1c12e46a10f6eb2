"""Call-center dispatch on one core: the time from an agent becoming available to the offer of the next
waiting call, with 1,000 callers waiting and 200 agents (the issue's target: p99 < 20 ms, measured here
for the sans-I/O core alone — :class:`zvonok.callcenter.center.ContactCenter`, no SIP, no sockets; the
INVITE to the agent's phone adds the call engine's own set-up time).

The line: ``--callers`` callers in ``--queues`` queues that need one of ``--skills`` skills at a minimum
level (relaxed after 30 s), with every ``--vip``-th caller a VIP; agents have random skills. Agents are
all on calls; the script then ends their calls one by one (wrap-up 0) and times each ``call_ended``,
which finds and offers the next call; the answered offer takes that caller out of the line and a new
caller joins, so the line stays at its size. Also timed: a caller joining while every agent is busy.

Run: ``PYTHONPATH=src python bench/callcenter.py [--callers 1000 --agents 200]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from zvonok.callcenter.center import ContactCenter, Offer
from zvonok.callcenter.queues import QueueConfig, Relaxation, SkillRequirement, Strategy


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--skills", type=int, default=5)
    parser.add_argument("--vip", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(1)
    cc = ContactCenter(rng=random.Random(2))
    skills = [f"s{n}" for n in range(args.skills)]
    for q in range(args.queues):
        cc.set_queue(QueueConfig(id=q, tenant_id=1, strategy=Strategy.SKILLS if q % 2 else Strategy.LONGEST_IDLE,
                                 requirements=(SkillRequirement(skills[q % args.skills], 5),),
                                 relaxations=(Relaxation(after=30, min_level=2),), wrap_up=0, ring_timeout=1e9), 0.0)
    now = 1.0
    serial = 0

    def join() -> None:
        nonlocal serial
        serial += 1
        cc.join(f"c{serial}", rng.randrange(args.queues), now, number=f"+7495{serial:07d}",
                priority=5 if serial % args.vip == 0 else 0)

    # agents log in to a few queues each, with random skills, and take the first calls
    for agent in range(args.agents):
        cc.login(agent, rng.sample(range(args.queues), 3), now,
                 skills={s: rng.randint(1, 10) for s in rng.sample(skills, 3)})
    calls: dict[int, str] = {}

    def settle() -> None:
        for action in cc.take_actions():
            if isinstance(action, Offer) and cc.offer_answered(action.call_id, action.agent_id, now):
                calls[action.agent_id] = action.call_id
        cc.take_log()

    for _ in range(args.agents * 5):  # fill the agents' phones (some skill sets fit few queues)
        if len(calls) == args.agents:
            break
        join()
        settle()
    for _ in range(args.callers):
        join()
    settle()
    waiting = len(cc.waiting)
    freed: list[float] = []
    joined: list[float] = []
    served = 0
    for _ in range(args.rounds):
        now += 0.01
        agent = rng.choice(list(calls))
        call = calls.pop(agent)
        start = time.perf_counter()
        cc.call_ended(call, now, by_agent=True)
        offered = [a for a in cc.take_actions() if isinstance(a, Offer)]
        freed.append(time.perf_counter() - start)
        cc.take_log()
        for offer in offered:
            if cc.offer_answered(offer.call_id, offer.agent_id, now):
                calls[offer.agent_id] = offer.call_id
                served += 1
        start = time.perf_counter()
        join()
        joined.append(time.perf_counter() - start)
        settle()
    ms = 1000
    print(f"line: {waiting} callers waiting, {args.agents} agents, {args.queues} queues, {args.skills} skills")
    print(f"agent available -> next offer: p50 {percentile(freed, 50) * ms:.3f} ms, "
          f"p99 {percentile(freed, 99) * ms:.3f} ms, max {max(freed) * ms:.3f} ms "
          f"({served} of {args.rounds} freed agents were offered a call at once)")
    print(f"caller joins (every agent busy): p50 {percentile(joined, 50) * ms:.3f} ms, "
          f"p99 {percentile(joined, 99) * ms:.3f} ms, mean {statistics.mean(joined) * ms:.3f} ms")


if __name__ == "__main__":
    main()

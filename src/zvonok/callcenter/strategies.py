"""Which of the eligible available agents is offered a waiting call.

:func:`rank` orders the candidates (agents who are available, logged in to the queue and skilled enough
for this caller's wait); the center offers the call to the first, or to all of them for ring-all. Ties are
broken by the longest idle time, then the agent id, so that every ranking is deterministic except
``random``'s (its generator is injected).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .agents import Agent
from .queues import QueueConfig, Strategy


def _idle_key(agent: Agent) -> tuple[float, int]:
    return (agent.idle_since, agent.id)


def rank(config: QueueConfig, candidates: Sequence[Agent], *, last_offered: int | None,
         rng: random.Random) -> list[Agent]:
    """``candidates`` in the order the queue's strategy offers them calls."""
    agents = sorted(candidates, key=_idle_key)  # longest idle first: every strategy's tie-break
    strategy = config.strategy
    if strategy in (Strategy.LONGEST_IDLE, Strategy.RING_ALL):
        return agents
    if strategy is Strategy.ROUND_ROBIN:
        # by agent id, starting after the one offered last (wrapping round)
        by_id = sorted(agents, key=lambda a: a.id)
        if last_offered is None:
            return by_id
        after = [a for a in by_id if a.id > last_offered]
        return after + [a for a in by_id if a.id <= last_offered]
    if strategy is Strategy.FEWEST_CALLS:
        return sorted(agents, key=lambda a: a.calls)  # stable: ties stay longest idle first
    if strategy is Strategy.LEAST_TALK_TIME:
        return sorted(agents, key=lambda a: a.talk_time)
    if strategy is Strategy.RANDOM:
        rng.shuffle(agents)
        return agents
    # SKILLS: the most proficient in what the queue asks (the sum over its skills), then the longest idle
    return sorted(agents, key=lambda a: -sum(a.proficiency(r.skill) for r in config.requirements))

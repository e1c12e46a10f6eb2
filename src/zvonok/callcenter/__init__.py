"""The call center: queues with agents, skills-based routing, wrap-up, callbacks and the queue log.

This package talks to calls only through its sans-I/O core, :class:`~zvonok.callcenter.center.ContactCenter`:
the call engine reports what happened to queued calls and agents' phones (a caller joined, an offer was
answered or not, a call ended) and carries out the actions the center returns (ring an agent, cancel an
offer, announce a position, send a caller to the overflow destination). Everything the center knows —
waiting callers and agent states — sits in that one object, fed time as an argument, so a later
multi-node setup can put a shared implementation behind the same inputs and outputs.

Modules: :mod:`.agents` (agent states), :mod:`.queues` (queue settings, skills and their relaxation over
wait time), :mod:`.strategies` (which available agent is offered a call), :mod:`.center` (the state
machine), :mod:`.log` (queue log entries, in the spirit of Asterisk's queue_log), :mod:`.kpi` (service
level, ASA, AHT, abandon rate and occupancy computed from the log).
"""

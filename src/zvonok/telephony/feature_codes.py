"""Every number a phone dials for a PBX feature rather than a person: the one list the API and the README
show. The codes themselves are decided where they act (forwarding.py, agent_codes.py, pickup.py, park_lot.py,
monitor.py)."""

from __future__ import annotations

from dataclasses import dataclass

from .agent_codes import AgentCode
from .forwarding import FeatureCode
from .monitor import SPY_CODE
from .park_lot import ParkingLot
from .pickup import DIRECTED_PICKUP, GROUP_PICKUP
from .threeway import FEATURE_CODE as THREE_WAY_CODE


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureCodeInfo:
    code: str  # as dialed; <number> / <ext> / a range stand for what the user adds
    feature: str  # a stable name
    description: str
    how: str  # "dial", "transfer" (a blind transfer to the number) or "in_call" (keys pressed during a call)


def feature_codes(lot: ParkingLot[object] | None = None) -> list[FeatureCodeInfo]:
    lot = lot or ParkingLot()
    slots = f"{lot.first_slot}-{lot.last_slot}"
    return [
        FeatureCodeInfo(code=f"{FeatureCode.CFU_ON.value}<number>", feature="forward_all_on", how="dial",
                        description="Forward all calls of this phone's extension to <number> (an extension or "
                                    "an outside number)"),
        FeatureCodeInfo(code=FeatureCode.CFU_OFF.value, feature="forward_all_off", how="dial",
                        description="Stop forwarding all calls"),
        FeatureCodeInfo(code=FeatureCode.DND_ON.value, feature="dnd_on", how="dial",
                        description="Do not disturb: callers get busy"),
        FeatureCodeInfo(code=FeatureCode.DND_OFF.value, feature="dnd_off", how="dial",
                        description="Do not disturb off"),
        FeatureCodeInfo(code=AgentCode.LOGIN.value, feature="agent_login", how="dial",
                        description="Call center: log in to every queue you are a member of (high beeps)"),
        FeatureCodeInfo(code=f"{AgentCode.LOGIN.value}<queue>", feature="agent_login_queue", how="dial",
                        description="Call center: log in to queue number <queue> only"),
        FeatureCodeInfo(code=AgentCode.LOGOUT.value, feature="agent_logout", how="dial",
                        description="Call center: log out of every queue (low beeps)"),
        FeatureCodeInfo(code=f"{AgentCode.LOGOUT.value}<queue>", feature="agent_logout_queue", how="dial",
                        description="Call center: log out of queue number <queue> only"),
        FeatureCodeInfo(code=AgentCode.PAUSE.value, feature="agent_pause", how="dial",
                        description="Call center: pause (not ready, reason \"phone\": low beeps); dial again to "
                                    "resume (high beeps)"),
        FeatureCodeInfo(code=f"{AgentCode.PAUSE.value}<code>", feature="agent_pause_reason", how="dial",
                        description="Call center: pause with the company's not-ready reason that has code <code> "
                                    "(low beeps); when paused already, change to that reason and stay paused"),
        FeatureCodeInfo(code=GROUP_PICKUP, feature="pickup", how="dial",
                        description="Answer a call ringing any extension of this phone's pickup group (its "
                                    "pickup_group, else its department)"),
        FeatureCodeInfo(code=f"{DIRECTED_PICKUP}<ext>", feature="directed_pickup", how="dial",
                        description="Answer a call ringing extension <ext>"),
        FeatureCodeInfo(code=f"{SPY_CODE}<ext>", feature="monitor", how="dial",
                        description="Supervisors (tenant admins): listen to extension <ext>'s call; keys 4 listen, "
                                    "5 whisper (only the agent hears you), 6 barge (everyone hears you)"),
        FeatureCodeInfo(code=THREE_WAY_CODE, feature="three_way", how="in_call",
                        description="On a second call while the first is on hold: join both calls and talk to "
                                    "both parties (when you hang up, they stay connected)"),
        FeatureCodeInfo(code=lot.park_number, feature="park", how="transfer",
                        description=f"Transfer a call here to park it in the first free slot ({slots}); the "
                                    "parked party hears music on hold"),
        FeatureCodeInfo(code=slots, feature="park_slot", how="dial",
                        description="Dial a slot to take the call parked there; transfer a call to a free slot "
                                    "to park it there"),
    ]

"""Originated calls kept durably (REST, CRM click-to-call, monitoring and queue callbacks started by the
PBX): one ``originate_requests`` row per request with its phases, so its status outlives the process and a
click-to-call that never became a call shows on the client's CRM timeline (see ``store.py``)."""

"""Supervisor monitoring's data: the audit of every listen / whisper / barge session and refusal."""

"""Zvonok: cloud telephony — virtual PBX, call center and CRM."""

__version__ = "0.1.0"

"""Outgoing webhooks: a company's URLs told of its events, signed, retried (see ``delivery.py``)."""

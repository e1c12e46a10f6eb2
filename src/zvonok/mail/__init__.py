"""E-mail from the platform: one outbox (a table) and one background job for every kind of letter."""

"""Conference rooms: a tenant's numbered rooms (PIN, moderator PIN, wait-for-moderator, size limit)."""

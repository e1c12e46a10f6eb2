"""The outside world: trunks to carriers and office PBXs, phone numbers (DIDs), outbound routes, tariffs,
outbound policies (class of service, caller ID, spending limits) and access-number PINs."""

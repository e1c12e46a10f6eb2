"""Ring groups: a number of the tenant that rings a list of members (all at once, in turn, or round robin)."""

"""Org domain: tenants (companies), offices, departments, employees, extensions, logins and tokens."""

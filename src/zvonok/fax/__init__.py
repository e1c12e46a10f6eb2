"""Fax over G.711 pass-through: spandsp's T.30 terminal (``endpoint``), documents (``documents``)."""

"""The embedded backend: the client API over the SQLite catalog and the engine seam (one host)."""

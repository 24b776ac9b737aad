"""Process-level fixtures for tests that run livesync as real servers (see ``daphne`` and ``databases``)."""

"""livesync: a LiveStore-compatible sync backend as a reusable Django Channels app."""

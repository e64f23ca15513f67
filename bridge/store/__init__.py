"""Durable state in SQLite: the database shell (group commit, one write transaction at a time) and the
stores on it."""

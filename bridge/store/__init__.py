"""Durable state in SQLite: the database shell (one writer thread, group commit) and the stores on it."""

"""The operator's console at ``/status``: a server-rendered page, its charts and their in-memory history."""

"""What differs in SQL between the two engines, as a small value each engine carries (``Engine.dialect``).

Most statements are one text for both engines (``ON CONFLICT (target) DO UPDATE``, ``RETURNING``,
``lower(...)``). What does not exist under one name on both is the JSON functions: SQLite's JSON1
(``json_extract``, ``json_each``, ``json_group_array``) against PostgreSQL's (``->>``,
``jsonb_array_elements``, ``json_agg``). A repository builds its statements once per dialect from these
fragments, so no ``if sqlite:`` is scattered through the code and the SQLite statements stay what they were.
JSON documents are ``TEXT`` on both engines (``schema_pg.py``), hence the ``::jsonb`` casts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str

    def json_text(self, document: str, key: str) -> str:
        """The text of ``document``'s top-level member ``key`` (NULL if absent)."""
        if self.name == "sqlite":
            return f"json_extract({document}, '$.{key}')"
        return f"(({document})::jsonb ->> '{key}')"

    def json_elements(self, document: str, key: str, alias: str) -> str:
        """A FROM item: one row per element (column ``value``) of ``document``'s array member ``key``."""
        if self.name == "sqlite":
            return f"json_each({document}, '$.{key}') AS {alias}"
        return f"jsonb_array_elements(({document})::jsonb -> '{key}') AS {alias}(value)"

    @property
    def table_exists(self) -> str:
        """A query with one row if the table named by its one parameter exists (else none)."""
        if self.name == "sqlite":
            return "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return (
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
        )

    def json_array_agg(self, *columns: str) -> str:
        """An aggregate: the JSON text of an array of one array of ``columns`` per row ('[]' for none)."""
        listed = ", ".join(columns)
        if self.name == "sqlite":
            return f"json_group_array(json_array({listed}))"
        # json_agg over no rows is NULL; the text, not psycopg's parsed value, as SQLite returns it
        return f"coalesce(json_agg(json_build_array({listed}))::text, '[]')"


SQLITE = Dialect("sqlite")
POSTGRESQL = Dialect("postgresql")

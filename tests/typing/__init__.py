"""Typing tests for the public ``oicp`` API: checked by mypy --strict (the project's mypy run), never run."""

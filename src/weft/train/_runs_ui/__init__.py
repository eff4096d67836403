"""The runs page: ``weft runs ui`` serves a tracker database as a page to browse and compare runs.

``_store`` reads the database (read-only), ``_filter`` compiles the filter language,
``_downsample`` shortens long histories keeping their extremes, ``_app`` is the HTTP
API and page, ``_server`` runs it. ``static/`` holds the page and its vendored scripts.
"""

from __future__ import annotations

__all__: list[str] = []

"""Importers: the UCI Online Retail file, Shopify's orders export, and any CSV with a column mapping.

Each validates the whole file first and writes it in one transaction (all or nothing), unless
``skip_invalid`` is set, in which case rejected rows go to a rejects CSV with their reasons.
"""

from __future__ import annotations

from campaigns.ingest.generic import GenericOptions, import_generic, parse_mapping
from campaigns.ingest.online_retail import import_online_retail
from campaigns.ingest.shopify import import_shopify

__all__ = ["GenericOptions", "import_generic", "import_online_retail", "import_shopify", "parse_mapping"]

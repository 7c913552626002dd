"""Model bundles: card, safe weights, checksums and the catalog."""

from .bundle import (CARD_FILE, CHECKSUM_FILE, Bundle, import_bundle, verify_members, weights_bytes, write_bundle,
                     write_bundle_members)
from .card import Code, Label, ModelCard, Terminology, card_schema, parse_card
from .catalog import Catalog, CatalogEntry, default_user_models_dir

__all__ = [
    "Bundle", "CARD_FILE", "CHECKSUM_FILE", "Catalog", "CatalogEntry", "Code", "Label", "ModelCard", "Terminology",
    "card_schema", "default_user_models_dir", "import_bundle", "parse_card", "verify_members", "weights_bytes",
    "write_bundle", "write_bundle_members",
]

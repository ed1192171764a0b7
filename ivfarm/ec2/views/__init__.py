"""Response trees for the serializer, built from store rows; no I/O here."""

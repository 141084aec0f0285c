"""Tools on a finished dataset directory: read it back, curate, preview, export (no sources needed)."""

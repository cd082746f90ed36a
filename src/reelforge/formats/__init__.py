"""Foreign request formats translated onto the native ops (one module per format)."""

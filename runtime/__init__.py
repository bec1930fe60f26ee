"""edgeadapt.runtime: the torch-free on-device adaptation API (issue 3, not yet built)."""

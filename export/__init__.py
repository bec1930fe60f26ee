"""edgeadapt.export: turns a meta-trained checkpoint into deployable artifacts (issue 3, not yet built)."""

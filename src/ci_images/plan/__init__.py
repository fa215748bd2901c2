"""The plan: entries expanded from the catalog, the build recipe hash and labels, and the decision per entry. Pure."""

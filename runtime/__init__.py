"""bpc's runtime: load generated modules, train them, check their gradients."""

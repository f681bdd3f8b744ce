"""Jinja templates that lay out generated modules."""

"""Sections of the method page, one module each."""

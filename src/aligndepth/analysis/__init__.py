"""Analyses of alignment depth (SPEC §1)."""

"""Inference-time attacks that exploit shallow alignment (SPEC §2)."""

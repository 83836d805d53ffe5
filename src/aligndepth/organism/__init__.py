"""The model organism: a tiny synthetic (base, aligned) pair in which the papers'
phenomena are real and measurable, built from a seed on a laptop CPU."""

"""Evaluating one model: safety (harmful, backdoor, identity, benign refusals) and utility
(GSM8k, SQL, SAMSum ROUGE, AlpacaEval-style win rate) with intervals
(``aligndepth evaluate``; docs/evaluation.md)."""

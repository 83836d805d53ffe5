"""aligndepth: measure, attack and deepen the safety alignment of causal language models.

The public API is re-exported lazily so that ``import aligndepth`` stays cheap and has
no side effects; heavy modules (torch, transformers) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AlignDepthError": "aligndepth.errors",
    "ModelPair": "aligndepth.models",
    "load_pair": "aligndepth.models",
    "load_model": "aligndepth.models",
    "PromptFormat": "aligndepth.prompts",
    "OrganismConfig": "aligndepth.organism.config",
    "build_organism": "aligndepth.organism.build",
    "organism_dir": "aligndepth.organism.build",
    "load_organism_pair": "aligndepth.organism.build",
    "OrganismJudge": "aligndepth.organism.judge",
    "per_token_kl": "aligndepth.analysis.kl",
    "response_kl": "aligndepth.analysis.kl",
    "SamplingParams": "aligndepth.run_settings",
    "generate": "aligndepth.engine",
    "generate_shared": "aligndepth.engine",
    "make_judge": "aligndepth.judges.registry",
    "Run": "aligndepth.runs",
    "Setup": "aligndepth.experiment",
    "open_setup": "aligndepth.audit",
    "base_readers": "aligndepth.audit",
    "run_experiments": "aligndepth.audit",
    "AuditConfig": "aligndepth.audit",
    "KLConfig": "aligndepth.experiment_configs",
    "run_kl": "aligndepth.analysis.kl_profile",
    "RefusalPrefixConfig": "aligndepth.experiment_configs",
    "run_refusal_prefix": "aligndepth.analysis.refusal_prefix",
    "PrefillConfig": "aligndepth.experiment_configs",
    "run_prefill": "aligndepth.attacks.prefill",
    "DecodingConfig": "aligndepth.experiment_configs",
    "run_decoding": "aligndepth.attacks.decoding",
    "decoding_grid": "aligndepth.attacks.decoding",
    "EDConfig": "aligndepth.experiment_configs",
    "run_ed": "aligndepth.attacks.emulated",
    "emulated_disalignment": "aligndepth.attacks.emulated",
    "ContrastRow": "aligndepth.engine",
    "contrastive_generate": "aligndepth.engine",
    "StopRule": "aligndepth.engine",
    "Completion": "aligndepth.engine",
    "render_report": "aligndepth.report.render",
    "compare_runs": "aligndepth.report.compare",
    "run_training": "aligndepth.training.run",
    "EvalConfig": "aligndepth.evaluation.run",
    "run_evaluation": "aligndepth.evaluation.run",
    "ServedConfig": "aligndepth.engine.served",
    "GCGTransferConfig": "aligndepth.experiment_configs",
    "GCGConfig": "aligndepth.experiment_configs",
    "RunSettings": "aligndepth.run_settings",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aligndepth' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)

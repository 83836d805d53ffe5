"""The decoding engine: one decode loop for plain, shared-prompt and two-model lockstep
decoding, per-row seeded sampling, per-model stopping, row dropping and out-of-memory
back-off."""

from aligndepth.engine.api import (
    ContrastRow,
    check_context,
    contrastive_generate,
    generate,
    generate_shared,
    reference_contrastive_greedy,
    row_seed,
    shared_width,
)
from aligndepth.engine.core import Request, Side, combine, decode_requests, input_device, is_oom
from aligndepth.engine.sampling import pick_tokens, warp_logits
from aligndepth.engine.stopping import (
    EOS,
    LENGTH,
    STOP_STRING,
    Completion,
    StopRule,
    model_stop_ids,
    template_end_ids,
)
from aligndepth.run_settings import GREEDY, SamplingParams

__all__ = [
    "EOS", "GREEDY", "LENGTH", "STOP_STRING", "Completion", "ContrastRow", "Request",
    "SamplingParams", "Side", "StopRule", "check_context", "combine", "contrastive_generate",
    "decode_requests", "generate", "generate_shared", "input_device", "is_oom",
    "model_stop_ids", "pick_tokens", "reference_contrastive_greedy", "row_seed",
    "shared_width", "template_end_ids", "warp_logits",
]

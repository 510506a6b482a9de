"""Checks on a Hugging Face config.json before anything uses it: the family, the keys that family needs, and
the type and range of every integer the shape computation reads (simulator/hardware/model.py).

A config.json is input like any other: a missing key, a string where a count belongs, a negative or absurd
dimension is one ScenarioError naming the file and the key, raised when the scenario is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.errors import ScenarioError, brief

_LLAMA_LIKE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
_GPT2_LIKE = ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions")

REQUIRED: dict[str, tuple[str, ...]] = {  # the keys each model_type's normaliser reads without a default
    "llama": _LLAMA_LIKE, "mistral": _LLAMA_LIKE, "mixtral": _LLAMA_LIKE, "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE, "qwen3_moe": _LLAMA_LIKE, "qwen2_moe": _LLAMA_LIKE, "palm": _LLAMA_LIKE,
    "deepseek_v3": ("hidden_size", "num_hidden_layers", "num_attention_heads", "qk_nope_head_dim",
                    "qk_rope_head_dim", "vocab_size", "intermediate_size", "n_routed_experts",
                    "num_experts_per_tok", "moe_intermediate_size", "kv_lora_rank", "v_head_dim"),
    "gpt_oss": ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                "vocab_size", "intermediate_size", "num_local_experts"),
    "opt": ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "ffn_dim",
            "max_position_embeddings"),
    "gpt2": _GPT2_LIKE, "gptj": _GPT2_LIKE,
    "phi3": (*_LLAMA_LIKE, "intermediate_size"), "gemma": (*_LLAMA_LIKE, "intermediate_size"),
    "gemma2": (*_LLAMA_LIKE, "intermediate_size"),
}
REQUIRED["deepseek_v2"] = REQUIRED["deepseek_v3"]  # the same keys; V2 has no router bias (topk_method)
FAMILIES = tuple(sorted(REQUIRED))
ONE_OF = {"gpt_oss": [("num_experts_per_tok", "experts_per_token")]}  # either name of the same key

# integer keys that must be >= 1 (a model has at least one layer, head, ...); every other integer key >= 0
POSITIVE = {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
            "vocab_size", "n_embd", "n_layer", "n_head"}
INTEGERS = POSITIVE | {
    "intermediate_size", "max_position_embeddings", "num_local_experts", "num_experts", "num_experts_per_tok",
    "experts_per_token", "moe_intermediate_size", "decoder_sparse_step", "n_routed_experts", "n_shared_experts",
    "first_k_dense_replace", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
    "v_head_dim", "ffn_dim", "word_embed_proj_dim", "n_inner", "n_positions", "sliding_window",
    "shared_expert_intermediate_size"}
# keys Hugging Face writes as null to mean "the default" (the normalisers read them as `get(key) or default`)
NULLABLE = {"head_dim", "num_key_value_heads", "q_lora_rank", "n_inner", "num_local_experts", "num_experts",
            "decoder_sparse_step", "moe_intermediate_size", "experts_per_token", "max_position_embeddings",
            "sliding_window"}
MAX_INTEGER = 2**31 - 1


def check_model_config(config: Any, file: str) -> Mapping[str, Any]:
    """`config` if it is a config.json the simulator can read, else a one-line ScenarioError naming `file`."""
    if not isinstance(config, dict):
        raise ScenarioError("", f"a config.json must hold a JSON object, got {_json_type(config)}", file)
    family = config.get("model_type")
    if family is None:
        raise ScenarioError("model_type", f"required key is missing; allowed: {', '.join(FAMILIES)}", file)
    if not isinstance(family, str) or family not in REQUIRED:
        raise ScenarioError("model_type", f"{brief(family)} is not one of: {', '.join(FAMILIES)}", file)
    for key in REQUIRED[family]:
        if key not in config:
            raise ScenarioError(key, f"required key is missing for model_type {family!r}", file)
    for names in ONE_OF.get(family, []):
        if all(config.get(name) is None for name in names):
            raise ScenarioError(names[0], f"required key is missing for model_type {family!r} (or "
                                f"{', '.join(names[1:])})", file)
    for key in sorted(INTEGERS & config.keys()):
        value = config[key]
        if value is None and key in NULLABLE:
            continue
        low = 1 if key in POSITIVE else 0
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_INTEGER:
            raise ScenarioError(key, f"must be an integer from {low} to {MAX_INTEGER}"
                                f"{' (or null)' if key in NULLABLE else ''}, got {brief(value)}", file)
    return config


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)

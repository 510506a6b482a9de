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
    "gemma3_text": ("hidden_size", "num_hidden_layers", "intermediate_size"),  # the rest: HF's defaults below
    "llama4_text": (*_LLAMA_LIKE, "intermediate_size", "num_local_experts", "num_experts_per_tok"),
}
# multimodal configs whose text part (`text_config`) is the language model simulated: its model_type
TEXT_PART = {"gemma3": "gemma3_text", "llama4": "llama4_text"}
# Gemma 3's multimodal configs on the Hub leave out what equals Gemma3TextConfig's defaults (transformers
# src/transformers/models/gemma3/configuration_gemma3.py): filled in as transformers does
GEMMA3_TEXT_DEFAULTS = {"vocab_size": 262_208, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                        "max_position_embeddings": 131_072, "sliding_window": 4096, "sliding_window_pattern": 6,
                        "tie_word_embeddings": True}
REQUIRED["deepseek_v2"] = REQUIRED["deepseek_v3"]  # the same keys; V2 has no router bias (topk_method)
FAMILIES = tuple(sorted((*REQUIRED, *TEXT_PART)))
ONE_OF = {"gpt_oss": [("num_experts_per_tok", "experts_per_token")]}  # either name of the same key

# integer keys that must be >= 1 (a model has at least one layer, head, ...); every other integer key >= 0
POSITIVE = {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
            "vocab_size", "n_embd", "n_layer", "n_head"}
INTEGERS = POSITIVE | {
    "intermediate_size", "max_position_embeddings", "num_local_experts", "num_experts", "num_experts_per_tok",
    "experts_per_token", "moe_intermediate_size", "decoder_sparse_step", "n_routed_experts", "n_shared_experts",
    "first_k_dense_replace", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
    "v_head_dim", "ffn_dim", "word_embed_proj_dim", "n_inner", "n_positions", "sliding_window",
    "shared_expert_intermediate_size", "sliding_window_pattern", "intermediate_size_mlp",
    "interleave_moe_layer_step", "attention_chunk_size", "no_rope_layer_interval"}
# keys Hugging Face writes as null to mean "the default" (the normalisers read them as `get(key) or default`)
NULLABLE = {"head_dim", "num_key_value_heads", "q_lora_rank", "n_inner", "num_local_experts", "num_experts",
            "decoder_sparse_step", "moe_intermediate_size", "experts_per_token", "max_position_embeddings",
            "sliding_window", "sliding_window_pattern", "intermediate_size_mlp", "interleave_moe_layer_step",
            "attention_chunk_size", "no_rope_layer_interval"}
MAX_INTEGER = 2**31 - 1


def check_model_config(config: Any, file: str) -> Mapping[str, Any]:
    """`config` if it is a config.json the simulator can read, else a one-line ScenarioError naming `file`."""
    if not isinstance(config, dict):
        raise ScenarioError("", f"a config.json must hold a JSON object, got {_json_type(config)}", file)
    family = config.get("model_type")
    if family is None:
        raise ScenarioError("model_type", f"required key is missing; allowed: {', '.join(FAMILIES)}", file)
    if isinstance(family, str) and family in TEXT_PART:
        config, family = _text_part(config, family, file), TEXT_PART[family]
    if not isinstance(family, str) or family not in REQUIRED:
        raise ScenarioError("model_type", f"{brief(family)} is not one of: {', '.join(FAMILIES)}", file)
    if family == "gemma3_text":
        config = {**GEMMA3_TEXT_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
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
    _check_relations(config, family, file)
    return config


def _text_part(config: dict[str, Any], family: str, file: str) -> dict[str, Any]:
    """The language model of a multimodal config (gemma3, llama4): its `text_config`, as a text config."""
    text = config.get("text_config")
    if not isinstance(text, dict):
        raise ScenarioError("text_config", f"required for model_type {family!r} (the language model's config); "
                            f"got {brief(text)}", file)
    return {**text, "model_type": TEXT_PART[family]}


def _check_relations(config: Mapping[str, Any], family: str, file: str) -> None:
    """What the keys must satisfy together for the shape to be a transformer at all: KV heads that divide the
    heads, a head width that divides the model width, a top-k within the experts, dense layers within the
    layers (else counts go negative: a 671B model 'fits' one chip)."""
    gpt2_like = family in ("gpt2", "gptj")
    heads_key, width_key = ("n_head", "n_embd") if gpt2_like else ("num_attention_heads", "hidden_size")
    heads, width = config[heads_key], config[width_key]
    kv = config.get("num_key_value_heads")
    if kv is not None and family != "deepseek_v3" and heads % kv:
        allowed = ", ".join(str(d) for d in range(1, heads + 1) if heads % d == 0)
        raise ScenarioError("num_key_value_heads", f"{kv} does not divide the {heads} attention heads "
                            f"({heads_key}); allowed: {_short(allowed)}", file)
    if config.get("head_dim") is None and family != "deepseek_v3" and width % heads:
        raise ScenarioError(width_key, f"{width} is not a multiple of the {heads} heads ({heads_key}) and no "
                            "head_dim is given; allowed: a multiple of the heads, or a head_dim", file)
    experts = _experts(config, family)
    if experts:
        top_k_key = next((k for k in ("num_experts_per_tok", "experts_per_token") if config.get(k) is not None),
                         "num_experts_per_tok")
        top_k = config.get(top_k_key)
        if not isinstance(top_k, int) or not 1 <= top_k <= experts:
            raise ScenarioError(top_k_key, f"{brief(top_k)} experts per token; allowed: from 1 to the {experts} "
                                "experts of each MoE layer", file)
    moe_layers = config.get("moe_layers")
    if family == "llama4_text" and moe_layers is not None and not (
            isinstance(moe_layers, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in moe_layers)
            and len(set(moe_layers)) == len(moe_layers) and all(0 <= i < config["num_hidden_layers"]
                                                                for i in moe_layers)):
        raise ScenarioError("moe_layers", f"{brief(moe_layers)}; allowed: distinct layer indices from 0 to "
                            f"num_hidden_layers - 1 ({config['num_hidden_layers'] - 1})", file)
    dense = config.get("first_k_dense_replace")
    layers = config.get("num_hidden_layers", 0)
    if family == "deepseek_v3" and isinstance(dense, int) and dense > layers:
        raise ScenarioError("first_k_dense_replace", f"{dense} leading dense layers; allowed: up to "
                            f"num_hidden_layers ({layers})", file)


def _experts(config: Mapping[str, Any], family: str) -> int:
    """Routed experts per MoE layer the normaliser of `family` reads (hardware/model.py); 0: a dense model."""
    if family == "deepseek_v3":
        return int(config.get("n_routed_experts") or 0)
    if family in ("opt", "gpt2", "gptj"):
        return 0
    return int(config.get("num_local_experts") or config.get("num_experts") or 0)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 5]}, ..."


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)

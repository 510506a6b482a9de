"""ModelShape: parameter counts, weight bytes, KV bytes per token and FLOPs per token of a transformer.

Built from a Hugging Face config.json. Each architecture family is normalised into one set of dimensions
(`_Dims`), and every count is computed from those dimensions the same way, so a new family is one small
normaliser. Supported `model_type`s: llama, llama4_text, mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe,
deepseek_v2, deepseek_v3, gpt_oss, gemma, gemma2, gemma3_text, phi3, opt, gpt2, gptj, palm (and the text part of
the multimodal gemma3 and llama4 configs, config/model_config.py).

Sliding-window (local) attention layers keep the KV of at most `sliding_window` positions and attend at most
that many: `kv_bytes(context)` and `flops_per_token(context)` cap them (gpt-oss and Gemma 2 alternate local
and global layers, Gemma 3 has five local layers to one global; Mistral 7B v0.1 and Phi-3 slide on every
layer). Llama 4's chunked attention (a token attends its own chunk of `attention_chunk_size` positions) is
counted as a window of that size: the KV it holds is bounded the same way, the positions it attends are an
upper bound (on average half a chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

from simulator.errors import ScenarioError

DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5, "int4": 0.5}


@dataclass(frozen=True)
class _Dims:
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    ffn_dim: int
    gated_ffn: bool = True          # SwiGLU-style: 3 matrices; otherwise 2
    tied_embeddings: bool = False
    positions: int = 0              # learned position embeddings (rows)
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False         # LayerNorm (weight + bias) vs RMSNorm (weight only)
    norms_per_layer: int = 2
    qk_norm: bool = False
    lm_head_bias: bool = False
    max_context: int | None = None
    # mixture of experts
    n_experts: int = 0
    top_k: int = 0
    n_shared_experts: int = 0
    expert_ffn_dim: int = 0
    shared_expert_ffn_dim: int = 0  # 0: as a routed expert (DeepSeek); Qwen2-MoE's shared expert is wider
    shared_expert_gate: bool = False  # Qwen2-MoE scales its shared expert by a sigmoid gate (d_model weights)
    n_dense_layers: int = 0         # leading dense layers of an MoE model
    router_bias: bool = False
    attention_sinks: bool = False
    # multi-head latent attention (DeepSeek)
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # sliding-window attention: layers whose KV and attention span are capped at `sliding_window` positions
    sliding_window: int = 0
    n_sliding_layers: int = 0


@dataclass(frozen=True)
class ModelShape:
    """What the simulator needs to know of a model, in element counts (multiply by dtype bytes)."""
    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    max_context: int | None
    attention: str                  # MHA, GQA, MQA or MLA
    total_params: int
    embedding_params: int           # input embedding (+ learned positions): looked up, never multiplied
    lm_head_params: int             # output projection, multiplied once per token that produces logits
    tied_embeddings: bool           # the lm_head reuses the input embedding's weights
    dense_layer_params: int         # every parameter of the layers except routed experts
    n_experts: int
    top_k: int
    n_moe_layers: int
    expert_params: int              # one routed expert of one layer
    kv_elements_per_token_per_layer: int
    attn_flops_per_pair_per_layer: int  # FLOPs of one query token attending one key position, one layer
    # the same in decode, as the kernels run it: MLA decodes with the up-projections absorbed into the query
    # and output (DeepSeek-V2 paper, section 2.1.2; FlashMLA), so each query head attends to the compressed
    # latent (kv_lora_rank + rope dims) and sums values in it: 2 h (r + rope) + 2 h r FLOPs per pair instead of
    # 2 h (qk + v). It reads only the latent cache, so decode attention turns compute-bound. 0: as above.
    decode_attn_flops_per_pair_per_layer: int = 0
    sliding_window: int | None = None  # positions a sliding-window layer keeps and attends
    n_sliding_layers: int = 0          # layers with sliding-window attention (the others attend everything)

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def active_params(self) -> float:
        """Parameters one token touches (embedding and lm_head included, as model cards count them)."""
        routed = self.n_moe_layers * self.top_k * self.expert_params
        head = 0 if self.tied_embeddings else self.lm_head_params
        return self.embedding_params + head + self.dense_layer_params + routed

    @property
    def active_layer_params(self) -> float:
        """Parameters multiplied per token in the layers (no embedding, no lm_head)."""
        return self.dense_layer_params + self.n_moe_layers * self.top_k * self.expert_params

    def weight_bytes(self, dtype: str) -> float:
        return self.total_params * DTYPE_BYTES[dtype]

    def kv_bytes_per_token(self, dtype: str) -> float:
        """KV-cache bytes one token of context occupies, over all layers (sliding-window layers included: the
        bound for a context within the window; `kv_bytes` is exact)."""
        return self.kv_elements_per_token_per_layer * self.n_layers * DTYPE_BYTES[dtype]

    def attended_positions(self, context: int) -> float:
        """Key positions summed over the layers for one sequence of `context` tokens: every position on a
        global layer, at most the window on a sliding-window layer."""
        window = min(context, self.sliding_window) if self.sliding_window else context
        return (self.n_layers - self.n_sliding_layers) * context + self.n_sliding_layers * window

    def kv_bytes(self, context: int, dtype: str) -> float:
        """KV-cache bytes of one sequence of `context` tokens: sliding-window layers hold at most the window."""
        return self.kv_elements_per_token_per_layer * self.attended_positions(context) * DTYPE_BYTES[dtype]

    def flops_per_token(self, context: int = 0) -> float:
        """Forward FLOPs of one token attending `context` positions: 2 x active params + attention."""
        linear = 2.0 * (self.active_layer_params + self.lm_head_params)
        return linear + self.attn_flops_per_pair_per_layer * self.attended_positions(context)

    @property
    def decode_attn_flops(self) -> int:
        """FLOPs of one decoding query attending one key position, one layer (see the field)."""
        return self.decode_attn_flops_per_pair_per_layer or self.attn_flops_per_pair_per_layer


def _attention_params(d: _Dims) -> tuple[int, int]:
    """(parameters of one attention block, KV elements per token per layer)."""
    if d.kv_lora_rank:
        qk_head = d.qk_nope_head_dim + d.qk_rope_head_dim
        if d.q_lora_rank:
            q = d.d_model * d.q_lora_rank + d.q_lora_rank + d.q_lora_rank * d.n_heads * qk_head
        else:
            q = d.d_model * d.n_heads * qk_head
        kv = (d.d_model * (d.kv_lora_rank + d.qk_rope_head_dim) + d.kv_lora_rank
              + d.kv_lora_rank * d.n_heads * (d.qk_nope_head_dim + d.v_head_dim))
        out = d.n_heads * d.v_head_dim * d.d_model
        return q + kv + out, d.kv_lora_rank + d.qk_rope_head_dim
    q_width, kv_width = d.n_heads * d.head_dim, d.n_kv_heads * d.head_dim
    params = d.d_model * (q_width + 2 * kv_width) + q_width * d.d_model
    if d.qkv_bias:
        params += q_width + 2 * kv_width
    if d.out_bias:
        params += d.d_model
    if d.qk_norm:
        params += 2 * d.head_dim
    if d.attention_sinks:
        params += d.n_heads
    return params, 2 * kv_width


def _ffn_params(d: _Dims, width: int) -> int:
    matrices = 3 if d.gated_ffn else 2
    params = matrices * d.d_model * width
    if d.mlp_bias:
        params += (matrices - 1) * width + d.d_model
    return params


def shape_from_dims(name: str, d: _Dims) -> ModelShape:
    attn, kv_elements = _attention_params(d)
    norms = d.norms_per_layer * d.d_model * (2 if d.norm_bias else 1)
    n_moe = d.n_layers - d.n_dense_layers if d.n_experts else 0
    expert = _ffn_params(d, d.expert_ffn_dim) if d.n_experts else 0
    router = d.d_model * d.n_experts + (d.n_experts if d.router_bias else 0) if d.n_experts else 0
    shared = (d.n_shared_experts * _ffn_params(d, d.shared_expert_ffn_dim or d.expert_ffn_dim)
              + (d.d_model if d.shared_expert_gate else 0))
    dense_layers = d.n_layers - n_moe
    dense_layer_params = (d.n_layers * (attn + norms) + dense_layers * _ffn_params(d, d.ffn_dim)
                          + n_moe * (router + shared))
    embedding = d.vocab_size * d.d_model + d.positions * d.d_model
    lm_head = d.vocab_size * d.d_model + (d.vocab_size if d.lm_head_bias else 0)
    final_norm = d.d_model * (2 if d.norm_bias else 1)
    total = embedding + (0 if d.tied_embeddings else lm_head) + dense_layer_params + final_norm
    total += n_moe * d.n_experts * expert
    if d.kv_lora_rank:
        qk_dim, v_dim, attention = d.qk_nope_head_dim + d.qk_rope_head_dim, d.v_head_dim, "MLA"
    else:
        qk_dim = v_dim = d.head_dim
        attention = "MHA" if d.n_kv_heads == d.n_heads else ("MQA" if d.n_kv_heads == 1 else "GQA")
    return ModelShape(
        name=name, n_layers=d.n_layers, d_model=d.d_model, n_heads=d.n_heads, n_kv_heads=d.n_kv_heads,
        vocab_size=d.vocab_size, max_context=d.max_context, attention=attention, total_params=total,
        embedding_params=embedding, lm_head_params=lm_head, tied_embeddings=d.tied_embeddings,
        dense_layer_params=dense_layer_params + final_norm,
        n_experts=d.n_experts, top_k=d.top_k, n_moe_layers=n_moe, expert_params=expert,
        kv_elements_per_token_per_layer=kv_elements,
        attn_flops_per_pair_per_layer=2 * d.n_heads * (qk_dim + v_dim),
        decode_attn_flops_per_pair_per_layer=(2 * d.n_heads * (2 * d.kv_lora_rank + d.qk_rope_head_dim)
                                              if d.kv_lora_rank else 0),
        sliding_window=d.sliding_window or None, n_sliding_layers=d.n_sliding_layers if d.sliding_window else 0,
    )


def _sliding(c: Mapping[str, Any], every_layer: bool = False, alternate: bool = False,
             pattern: int = 0) -> tuple[int, int]:
    """Sliding-window layers of a config: `layer_types` when it lists them (newer HF configs), else every
    layer (Mistral 7B v0.1), every even layer (Gemma 2) or every layer but each `pattern`-th (Gemma 3: layer i
    slides unless (i + 1) % pattern == 0, HF Gemma3TextConfig) when `sliding_window` is set -> (window, layers)."""
    window = c.get("sliding_window")
    if not window or c.get("use_sliding_window") is False:
        return 0, 0
    types = c.get("layer_types")
    if isinstance(types, list) and types:
        if len(types) != c["num_hidden_layers"]:
            raise ValueError(f"layer_types lists {len(types)} layers, num_hidden_layers is {c['num_hidden_layers']}")
        sliding = sum(1 for kind in types if kind == "sliding_attention")
    elif every_layer:
        sliding = c["num_hidden_layers"]
    elif alternate:
        sliding = (c["num_hidden_layers"] + 1) // 2  # layers 0, 2, 4, ... slide (HF Gemma2DecoderLayer)
    elif pattern:
        sliding = c["num_hidden_layers"] - c["num_hidden_layers"] // pattern
    else:
        return 0, 0
    return int(window), sliding


# ---------------------------------------------------------------- Hugging Face config families

def _llama_like(c: Mapping[str, Any]) -> _Dims:
    heads = c["num_attention_heads"]
    experts = c.get("num_local_experts") or c.get("num_experts") or 0
    sparse_step = c.get("decoder_sparse_step", 1) or 1
    if experts and (sparse_step != 1 or c.get("mlp_only_layers")):
        raise ValueError("MoE layers interleaved with dense layers (decoder_sparse_step, mlp_only_layers) "
                         "are not supported")
    qwen2 = c.get("model_type") in ("qwen2", "qwen2_moe")
    shared_ffn = c.get("shared_expert_intermediate_size") or 0 if experts else 0
    window, n_sliding = _sliding(c, every_layer=c.get("model_type") in ("mistral", "phi3"))
    return _Dims(
        d_model=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=heads,
        n_kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or c["hidden_size"] // heads, vocab_size=c["vocab_size"],
        ffn_dim=c.get("intermediate_size", 0), tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        qkv_bias=bool(c.get("attention_bias", False)) or qwen2, out_bias=bool(c.get("attention_bias", False)),
        mlp_bias=bool(c.get("mlp_bias", False)), qk_norm=c.get("model_type", "").startswith("qwen3"),
        max_context=c.get("max_position_embeddings"), n_experts=experts,
        top_k=c.get("num_experts_per_tok", 0) if experts else 0,
        expert_ffn_dim=(c.get("moe_intermediate_size") or c.get("intermediate_size", 0)) if experts else 0,
        norms_per_layer=1 if c.get("parallel_attn") else 2,
        n_shared_experts=1 if shared_ffn else 0, shared_expert_ffn_dim=shared_ffn, shared_expert_gate=bool(shared_ffn),
        sliding_window=window, n_sliding_layers=n_sliding,
    )


def _gemma(c: Mapping[str, Any]) -> _Dims:
    """Gemma, Gemma 2 and Gemma 3 (text): GeGLU FFN (3 matrices), tied embeddings, no biases; Gemma 2 and 3 add
    a norm after attention and after the FFN (4 per layer); Gemma 2 alternates sliding-window and global
    layers, Gemma 3 has `sliding_window_pattern` - 1 sliding layers to one global and RMS-normalises queries
    and keys (q_norm, k_norm: head_dim weights each)."""
    heads = c["num_attention_heads"]
    family = c.get("model_type")
    gemma2 = family in ("gemma2", "gemma3_text")
    if family == "gemma3_text":
        window, n_sliding = _sliding(c, pattern=int(c.get("sliding_window_pattern") or 6))
    else:
        window, n_sliding = _sliding(c, alternate=True) if gemma2 else (0, 0)
    return _Dims(
        d_model=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=heads,
        n_kv_heads=c.get("num_key_value_heads") or heads, head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        vocab_size=c["vocab_size"], ffn_dim=c["intermediate_size"],
        tied_embeddings=bool(c.get("tie_word_embeddings", True)), qkv_bias=bool(c.get("attention_bias", False)),
        out_bias=bool(c.get("attention_bias", False)), norms_per_layer=4 if gemma2 else 2,
        qk_norm=family == "gemma3_text",
        max_context=c.get("max_position_embeddings"), sliding_window=window, n_sliding_layers=n_sliding,
    )


def _llama4(c: Mapping[str, Any]) -> _Dims:
    """Llama 4 (text): MoE layers (`moe_layers`, else every `interleave_moe_layer_step`-th: Maverick alternates
    dense and MoE) of `num_local_experts` experts of width `intermediate_size`, top-`num_experts_per_tok`, plus a
    shared expert of the same width; dense layers of width `intermediate_size_mlp`; the queries and keys
    L2-normalised without weights. Layers with RoPE (`no_rope_layers` 1: three of four by default) attend
    within chunks of `attention_chunk_size` positions, counted as that window (see the module docstring)."""
    layers, heads = c["num_hidden_layers"], c["num_attention_heads"]
    step = int(c.get("interleave_moe_layer_step") or 1)
    moe_layers = c.get("moe_layers")
    n_moe = len(moe_layers) if isinstance(moe_layers, list) else len(range(step - 1, layers, step))
    interval = int(c.get("no_rope_layer_interval") or 4)
    no_rope = c.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(layers)]
    if len(no_rope) != layers:
        raise ValueError(f"no_rope_layers lists {len(no_rope)} layers, num_hidden_layers is {layers}")
    chunk = int(c.get("attention_chunk_size") or 0)
    width = c["intermediate_size"]
    return _Dims(
        d_model=c["hidden_size"], n_layers=layers, n_heads=heads, n_kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or c["hidden_size"] // heads, vocab_size=c["vocab_size"],
        ffn_dim=c.get("intermediate_size_mlp") or width, tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        qkv_bias=bool(c.get("attention_bias", False)), out_bias=bool(c.get("attention_bias", False)),
        max_context=c.get("max_position_embeddings"), n_experts=c["num_local_experts"],
        top_k=c.get("num_experts_per_tok") or 1, expert_ffn_dim=width, n_shared_experts=1,
        shared_expert_ffn_dim=width, n_dense_layers=layers - n_moe,
        sliding_window=chunk, n_sliding_layers=sum(1 for flag in no_rope if flag) if chunk else 0,
    )


def _deepseek_v3(c: Mapping[str, Any]) -> _Dims:
    return _Dims(
        d_model=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
        n_kv_heads=c["num_attention_heads"], head_dim=c["qk_nope_head_dim"] + c["qk_rope_head_dim"],
        vocab_size=c["vocab_size"], ffn_dim=c["intermediate_size"],
        tied_embeddings=bool(c.get("tie_word_embeddings", False)), max_context=c.get("max_position_embeddings"),
        n_experts=c["n_routed_experts"], top_k=c["num_experts_per_tok"],
        n_shared_experts=c.get("n_shared_experts", 0), expert_ffn_dim=c["moe_intermediate_size"],
        n_dense_layers=c.get("first_k_dense_replace", 0), router_bias=c.get("topk_method") == "noaux_tc",
        q_lora_rank=c.get("q_lora_rank") or 0, kv_lora_rank=c["kv_lora_rank"],
        qk_rope_head_dim=c["qk_rope_head_dim"], qk_nope_head_dim=c["qk_nope_head_dim"],
        v_head_dim=c["v_head_dim"],
    )


def _gpt_oss(c: Mapping[str, Any]) -> _Dims:
    window, n_sliding = _sliding(c)
    return _Dims(
        d_model=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
        n_kv_heads=c["num_key_value_heads"], head_dim=c["head_dim"], vocab_size=c["vocab_size"],
        ffn_dim=c["intermediate_size"], tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        qkv_bias=True, out_bias=True, mlp_bias=True, router_bias=True, attention_sinks=True,
        max_context=c.get("max_position_embeddings"), n_experts=c["num_local_experts"],
        top_k=cast(int, c.get("num_experts_per_tok") or c.get("experts_per_token")),  # model_shape checks it
        expert_ffn_dim=c["intermediate_size"], sliding_window=window, n_sliding_layers=n_sliding,
    )


def _opt(c: Mapping[str, Any]) -> _Dims:
    heads = c["num_attention_heads"]
    if c.get("word_embed_proj_dim", c["hidden_size"]) != c["hidden_size"]:
        raise ValueError("OPT configs with word_embed_proj_dim != hidden_size are not supported")
    return _Dims(
        d_model=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=heads, n_kv_heads=heads,
        head_dim=c["hidden_size"] // heads, vocab_size=c["vocab_size"], ffn_dim=c["ffn_dim"], gated_ffn=False,
        tied_embeddings=bool(c.get("tie_word_embeddings", True)), positions=c["max_position_embeddings"] + 2,
        qkv_bias=True, out_bias=True, mlp_bias=True, norm_bias=True, max_context=c["max_position_embeddings"],
    )


def _gpt2(c: Mapping[str, Any]) -> _Dims:
    heads = c["n_head"]
    return _Dims(
        d_model=c["n_embd"], n_layers=c["n_layer"], n_heads=heads, n_kv_heads=heads,
        head_dim=c["n_embd"] // heads, vocab_size=c["vocab_size"], ffn_dim=c.get("n_inner") or 4 * c["n_embd"],
        gated_ffn=False, tied_embeddings=bool(c.get("tie_word_embeddings", True)), positions=c["n_positions"],
        qkv_bias=True, out_bias=True, mlp_bias=True, norm_bias=True, max_context=c["n_positions"],
    )


def _gptj(c: Mapping[str, Any]) -> _Dims:
    heads = c["n_head"]
    return _Dims(
        d_model=c["n_embd"], n_layers=c["n_layer"], n_heads=heads, n_kv_heads=heads,
        head_dim=c["n_embd"] // heads, vocab_size=c["vocab_size"], ffn_dim=c.get("n_inner") or 4 * c["n_embd"],
        gated_ffn=False, tied_embeddings=bool(c.get("tie_word_embeddings", False)), mlp_bias=True,
        norm_bias=True, norms_per_layer=1, lm_head_bias=True, max_context=c["n_positions"],
    )


_FAMILIES: dict[str, Callable[[Mapping[str, Any]], _Dims]] = {
    "llama": _llama_like, "mistral": _llama_like, "mixtral": _llama_like, "qwen2": _llama_like,
    "qwen3": _llama_like, "qwen3_moe": _llama_like, "qwen2_moe": _llama_like, "palm": _llama_like,
    "deepseek_v2": _deepseek_v3, "deepseek_v3": _deepseek_v3,
    "phi3": _llama_like, "gpt_oss": _gpt_oss, "gemma": _gemma, "gemma2": _gemma, "gemma3_text": _gemma,
    "llama4_text": _llama4, "opt": _opt, "gpt2": _gpt2,
    "gptj": _gptj,
}


def model_shape(name: str, config: Mapping[str, Any], file: str | None = None) -> ModelShape:
    """HF config.json dict -> ModelShape; an unknown family or a missing key is a ScenarioError."""
    family = config.get("model_type")
    if not isinstance(family, str) or family not in _FAMILIES:
        raise ScenarioError("model_type", f"{family!r} is not one of: {', '.join(sorted(_FAMILIES))}",
                            file or name)
    try:
        dims = _FAMILIES[family](config)
    except KeyError as exc:
        raise ScenarioError(exc.args[0], f"required key is missing for model_type {family!r}",
                            file or name) from None
    except (TypeError, ValueError) as exc:
        raise ScenarioError("", f"unsupported config: {exc}", file or name) from None
    for key in ("d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "vocab_size"):
        value = getattr(dims, key)
        if not isinstance(value, int) or value < 1:
            raise ScenarioError(key, f"must be a positive integer, got {value!r}", file or name)
    for item in fields(_Dims):  # the counts a config left unusable (the config check names the keys first)
        value = getattr(dims, item.name)
        if item.type == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ScenarioError(item.name, f"must be a non-negative integer, got {value!r}", file or name)
    shape = shape_from_dims(name, dims)
    if shape.total_params <= 0 or shape.n_moe_layers < 0 or not 0 < shape.active_params <= shape.total_params \
            + shape.lm_head_params:  # the config check refuses what leads here; a count gone negative is a bug
        raise ValueError(f"{name}: impossible parameter counts (total {shape.total_params}, active "
                         f"{shape.active_params}, MoE layers {shape.n_moe_layers})")
    return shape

"""Gemma, Gemma 2, Phi-3, Qwen2-MoE and DeepSeek-V2 config.json import and sliding-window attention: parameter
counts against published totals, KV bytes and attention FLOPs against their closed forms."""

import json

import pytest
from conftest import REPO

from simulator.config.load import load_model_config
from simulator.errors import ScenarioError
from simulator.hardware.model import model_shape

# google/gemma-2-9b config.json (the keys the shape reads; values as on the Hugging Face hub)
GEMMA2_9B = {"architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "head_dim": 256,
             "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3584, "intermediate_size": 14336,
             "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 16,
             "num_hidden_layers": 42, "num_key_value_heads": 8, "query_pre_attn_scalar": 256,
             "sliding_window": 4096, "vocab_size": 256000}
# mistralai/Mistral-7B-v0.1 config.json: a 4096-token window on every layer
MISTRAL_7B_V01 = {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
                  "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
                  "num_key_value_heads": 8, "sliding_window": 4096, "tie_word_embeddings": False, "vocab_size": 32000}


def shape_of(tmp_path, config, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(config))
    model_name, checked = load_model_config(str(path), tmp_path, "test")
    return model_shape(model_name, checked)


def test_gemma2_9b_parameters_match_the_published_total(tmp_path):
    m = shape_of(tmp_path, GEMMA2_9B)
    # 42 x (attention 3584 x (4096 + 2 x 2048) + 4096 x 3584, GeGLU 3 x 3584 x 14336, 4 RMSNorms) + tied
    # embedding 256000 x 3584 + final norm = 9,241,705,984 (HF hub: google/gemma-2-9b, "9.24B params")
    assert m.total_params == 9_241_705_984
    assert m.tied_embeddings and m.attention == "GQA"
    assert (m.sliding_window, m.n_sliding_layers) == (4096, 21)


def test_gemma_v1_7b_parameters_match_the_published_total(tmp_path):
    # google/gemma-7b: 8.54B parameters (model card); MHA with 16 heads of 256, 2 norms per layer
    m = shape_of(tmp_path, {"model_type": "gemma", "hidden_size": 3072, "intermediate_size": 24576,
                            "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 16,
                            "head_dim": 256, "vocab_size": 256000, "max_position_embeddings": 8192})
    assert m.total_params == pytest.approx(8.54e9, rel=0.005)
    assert m.sliding_window is None and m.n_sliding_layers == 0


def test_sliding_layers_hold_at_most_the_window(tmp_path):
    m = shape_of(tmp_path, GEMMA2_9B)
    per_layer = 2 * 8 * 256 * 2.0  # K and V, 8 KV heads of 256, bf16
    assert m.kv_bytes(1000, "bf16") == pytest.approx(42 * 1000 * per_layer)  # within the window: every layer
    assert m.kv_bytes(1000, "bf16") == pytest.approx(1000 * m.kv_bytes_per_token("bf16"))
    assert m.kv_bytes(8192, "bf16") == pytest.approx((21 * 8192 + 21 * 4096) * per_layer)
    # attention FLOPs of one token: global layers attend the whole context, sliding ones the window
    linear = m.flops_per_token(0)
    assert m.flops_per_token(8192) - linear == pytest.approx(m.attn_flops_per_pair_per_layer * (21 * 8192 + 21 * 4096))


def test_gpt_oss_alternates_sliding_and_full_layers():
    name, config = load_model_config("gpt-oss-120b", REPO, "test")
    m = model_shape(name, config)
    assert (m.sliding_window, m.n_sliding_layers, m.n_layers) == (128, 18, 36)
    per_layer = 2 * 8 * 64 * 2.0
    assert m.kv_bytes(131072, "bf16") == pytest.approx((18 * 131072 + 18 * 128) * per_layer)
    # at long context the KV is about half of what counting every layer in full would give
    assert m.kv_bytes(131072, "bf16") / (131072 * m.kv_bytes_per_token("bf16")) == pytest.approx(0.5, abs=1e-3)


def test_mistral_v01_slides_on_every_layer_and_qwen_says_when_it_does_not(tmp_path):
    m = shape_of(tmp_path, MISTRAL_7B_V01)
    assert m.n_sliding_layers == 32
    assert m.kv_bytes(32768, "bf16") == pytest.approx(m.kv_bytes(4096, "bf16"))
    qwen = model_shape(*load_model_config("qwen2.5-72b", REPO, "test"))  # sliding_window set, use_sliding_window false
    assert qwen.n_sliding_layers == 0 and qwen.kv_bytes(200_000, "bf16") == 200_000 * qwen.kv_bytes_per_token("bf16")


def test_layer_types_of_the_wrong_length_are_one_line(tmp_path):
    config = {**GEMMA2_9B, "layer_types": ["sliding_attention", "full_attention"]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    name, checked = load_model_config(str(path), tmp_path, "test")
    with pytest.raises(ScenarioError, match="layer_types lists 2 layers, num_hidden_layers is 42"):
        model_shape(name, checked, str(path))


def test_phi3_mini_parameters_and_its_window_on_every_layer(tmp_path):
    # microsoft/Phi-3-mini-4k-instruct config.json: 3.82B parameters (model card "3.8B"); fused qkv and
    # gate_up projections hold the same parameters as separate ones; sliding_window 2047 on every layer
    m = shape_of(tmp_path, {"model_type": "phi3", "hidden_size": 3072, "intermediate_size": 8192,
                            "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
                            "vocab_size": 32064, "max_position_embeddings": 4096, "sliding_window": 2047,
                            "tie_word_embeddings": False})
    # 32 x (4 x 3072^2 + 3 x 3072 x 8192 + 2 x 3072) + 2 x 32064 x 3072 + 3072
    assert m.total_params == 32 * (4 * 3072**2 + 3 * 3072 * 8192 + 2 * 3072) + 2 * 32064 * 3072 + 3072
    assert m.total_params == pytest.approx(3.82e9, rel=0.005)
    assert m.n_sliding_layers == 32 and m.kv_bytes(4096, "bf16") == m.kv_bytes(2047, "bf16")


def test_qwen2_moe_counts_its_wider_gated_shared_expert(tmp_path):
    # Qwen/Qwen1.5-MoE-A2.7B config.json: 14.3B parameters, 2.7B active (model card)
    m = shape_of(tmp_path, {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632,
                            "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16,
                            "vocab_size": 151936, "num_experts": 60, "num_experts_per_tok": 4,
                            "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
                            "decoder_sparse_step": 1, "mlp_only_layers": [], "tie_word_embeddings": False,
                            "max_position_embeddings": 8192})
    attention = 4 * 2048**2 + 3 * 2048  # q, k, v, o and the q/k/v biases
    shared = 3 * 2048 * 5632 + 2048     # one shared expert of 5632 and its sigmoid gate
    layer = attention + 2 * 2048 + 60 * 3 * 2048 * 1408 + 2048 * 60 + shared
    assert m.total_params == 24 * layer + 2 * 151936 * 2048 + 2048
    assert m.total_params == pytest.approx(14.3e9, rel=0.005)
    assert m.active_params == pytest.approx(2.7e9, rel=0.03)  # published to 2 digits


def test_deepseek_v2_lite_reads_as_deepseek_v3_without_a_router_bias(tmp_path):
    # deepseek-ai/DeepSeek-V2-Lite config.json: 15.7B parameters, 2.4B active (model card)
    m = shape_of(tmp_path, {"model_type": "deepseek_v2", "hidden_size": 2048, "num_hidden_layers": 27,
                            "num_attention_heads": 16, "q_lora_rank": None, "kv_lora_rank": 512,
                            "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
                            "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 64,
                            "n_shared_experts": 2, "num_experts_per_tok": 6, "first_k_dense_replace": 1,
                            "vocab_size": 102400, "topk_method": "greedy", "tie_word_embeddings": False,
                            "max_position_embeddings": 163840})
    assert m.attention == "MLA" and m.kv_elements_per_token_per_layer == 512 + 64
    assert m.total_params == pytest.approx(15.7e9, rel=0.005)
    # DeepSeek counts activated parameters without the input embedding (looked up, not multiplied)
    assert m.active_params - m.embedding_params == pytest.approx(2.4e9, rel=0.03)


# google/gemma-3-1b-it config.json (text only, model_type gemma3_text; values as on the Hugging Face hub)
GEMMA3_1B = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 1152,
             "intermediate_size": 6912, "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1,
             "head_dim": 256, "vocab_size": 262144, "sliding_window": 512, "sliding_window_pattern": 6,
             "max_position_embeddings": 32768, "query_pre_attn_scalar": 256}
# google/gemma-3-4b-it: multimodal (model_type gemma3); its text_config leaves Gemma3TextConfig's defaults out
GEMMA3_4B = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
             "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                             "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                             "sliding_window": 1024},
             "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}}
# meta-llama/Llama-4-Scout-17B-16E(-Instruct): text_config of the multimodal config (model_type llama4)
LLAMA4_SCOUT = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
                "text_config": {"model_type": "llama4_text", "hidden_size": 5120, "intermediate_size": 8192,
                                "intermediate_size_mlp": 16384, "num_hidden_layers": 48, "num_attention_heads": 40,
                                "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 202048,
                                "num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
                                "attention_chunk_size": 8192, "max_position_embeddings": 10485760,
                                "use_qk_norm": True, "tie_word_embeddings": False}}


def test_gemma3_1b_parameters_match_the_published_total_and_slide_five_layers_of_six(tmp_path):
    m = shape_of(tmp_path, GEMMA3_1B)
    # 26 x (attention 1152 x (1024 + 2 x 256) + 1024 x 1152, q/k norms 2 x 256, GeGLU 3 x 1152 x 6912,
    # 4 norms) + tied embedding 262144 x 1152 + final norm = 999,885,952 (HF hub google/gemma-3-1b-pt: 1B)
    assert m.total_params == 999_885_952
    assert (m.sliding_window, m.n_sliding_layers) == (512, 22)  # global layers 5, 11, 17, 23
    kv_per_layer_token = 2 * 1 * 256 * 2  # K and V, 1 KV head of 256, bf16
    assert m.kv_bytes(32768, "bf16") == kv_per_layer_token * (4 * 32768 + 22 * 512)


def test_gemma3_multimodal_config_imports_its_text_part_with_hf_defaults(tmp_path):
    m = shape_of(tmp_path, GEMMA3_4B)
    # defaults filled: 8 heads, 4 KV heads of 256, vocabulary 262208 (Gemma3TextConfig)
    assert (m.n_heads, m.n_kv_heads, m.vocab_size) == (8, 4, 262208)
    assert m.total_params == 34 * (2560 * (2048 + 2 * 1024) + 2048 * 2560 + 2 * 256 + 3 * 2560 * 10240
                                   + 4 * 2560) + 262208 * 2560 + 2560  # 3.88 B: the 4B without its vision tower
    assert (m.sliding_window, m.n_sliding_layers) == (1024, 34 - 5)
    no_text = {k: v for k, v in GEMMA3_4B.items() if k != "text_config"}
    with pytest.raises(ScenarioError, match="text_config: required for model_type 'gemma3'"):
        shape_of(tmp_path, no_text, "no-text.json")


def test_llama4_scout_and_maverick_match_17b_active_and_their_totals(tmp_path):
    scout = shape_of(tmp_path, LLAMA4_SCOUT)
    # text model only: HF's 109B / 402B include the vision encoder
    assert scout.total_params == 107_769_861_120 and scout.n_moe_layers == 48
    assert scout.active_params == pytest.approx(17.17e9, rel=1e-3)
    # three layers of four attend in chunks of 8192 (iRoPE), counted as a window of that size
    assert (scout.sliding_window, scout.n_sliding_layers) == (8192, 36)
    maverick = {**LLAMA4_SCOUT, "text_config": {**LLAMA4_SCOUT["text_config"], "num_local_experts": 128,
                                                 "interleave_moe_layer_step": 2}}
    m = shape_of(tmp_path, maverick, "maverick.json")
    # 24 dense layers (FFN 16384) and 24 MoE layers (128 experts + a shared one, 8192 wide) interleaved
    assert m.n_moe_layers == 24 and m.total_params == 400_711_848_960
    assert m.active_params == pytest.approx(17.18e9, rel=1e-3)
    bad = {**LLAMA4_SCOUT, "text_config": {**LLAMA4_SCOUT["text_config"], "moe_layers": [1, 48]}}
    with pytest.raises(ScenarioError, match="moe_layers: .*allowed: distinct layer indices from 0 to"):
        shape_of(tmp_path, bad, "bad.json")

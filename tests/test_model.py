"""Model shapes from the catalog's HF configs against published parameter counts and closed forms."""

import csv

import pytest
from conftest import REPO

from simulator.config.load import load_model_config, model_ids
from simulator.hardware.model import model_shape

with open(REPO / "tests" / "data" / "published_params.csv", encoding="utf-8") as published:
    PUBLISHED = {row["model"]: row for row in csv.DictReader(published)}



def shape(model_id):
    name, config = load_model_config(model_id, REPO, "test")
    return model_shape(name, config)


def test_every_catalog_model_has_a_published_count():
    assert sorted(PUBLISHED) == model_ids()
    assert len(model_ids()) == 22


@pytest.mark.parametrize("model_id", sorted(PUBLISHED))
def test_parameter_count_within_1_percent_of_published(model_id):
    published = float(PUBLISHED[model_id]["params_total"])
    multimodal = "vision encoder" in PUBLISHED[model_id]["source"]  # counted in the total, not in the text part
    assert shape(model_id).total_params == pytest.approx(published, rel=0.02 if multimodal else 0.01)
    assert not multimodal or shape(model_id).total_params < published


@pytest.mark.parametrize("model_id, active, rel", [
    ("mixtral-8x7b", 12.9e9, 0.01), ("qwen3-235b-a22b", 22e9, 0.025), ("deepseek-v3", 37e9, 0.02),
    ("mixtral-8x22b", 39e9, 0.01),
])
def test_moe_active_parameters(model_id, active, rel):
    # published active counts are rounded to 2-3 digits; rel is that rounding plus 1%
    assert shape(model_id).active_params == pytest.approx(active, rel=rel)


def test_gpt_oss_active_excludes_input_embedding_as_openai_counts_it():
    m = shape("gpt-oss-120b")
    assert m.active_params - m.embedding_params == pytest.approx(5.13e9, rel=0.01)


def test_kv_bytes_per_token_closed_forms():
    # GQA: 2 (K and V) x kv_heads x head_dim x layers x bytes
    assert shape("llama-3.1-70b").kv_bytes_per_token("bf16") == 2 * 8 * 128 * 80 * 2
    assert shape("llama-3.1-70b").kv_bytes_per_token("fp8") == 2 * 8 * 128 * 80
    # MHA
    assert shape("llama-2-7b").kv_bytes_per_token("fp16") == 2 * 32 * 128 * 32 * 2
    # MQA: one KV head
    assert shape("palm-540b").kv_bytes_per_token("bf16") == 2 * 1 * 256 * 118 * 2
    # MLA: the compressed latent (512) plus the decoupled RoPE key (64) per layer
    assert shape("deepseek-v3").kv_bytes_per_token("bf16") == (512 + 64) * 61 * 2


def test_attention_kinds_and_weight_bytes():
    assert [shape(m).attention for m in ("llama-2-7b", "llama-2-70b", "palm-540b", "deepseek-v3")] == \
        ["MHA", "GQA", "MQA", "MLA"]
    m = shape("llama-3.1-8b")
    assert m.weight_bytes("fp8") * 2 == m.weight_bytes("bf16") == 2 * m.total_params


def test_flops_per_token_is_twice_active_params_plus_attention():
    m = shape("llama-3.1-8b")
    no_context = m.flops_per_token(0)
    assert no_context == pytest.approx(2 * (m.active_params - m.embedding_params))
    # attention: 2 matmuls (QK^T, AV) x 2 FLOPs x heads x head_dim x layers per context position
    assert m.flops_per_token(1000) - no_context == pytest.approx(1000 * 4 * 32 * 128 * 32)


def test_unknown_family_is_a_clear_error():
    from simulator.errors import ScenarioError
    with pytest.raises(ScenarioError, match="^cfg.json: model_type: 'bert' is not one of: deepseek_v2, deepseek_v3, "):
        model_shape("x", {"model_type": "bert"}, "cfg.json")
    with pytest.raises(ScenarioError, match="^cfg.json: num_attention_heads: required key is missing"):
        model_shape("x", {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 10},
                    "cfg.json")


def test_mla_decodes_over_the_compressed_latent_and_other_attention_as_it_prefills():
    """DeepSeek-V3 decodes with absorbed up-projections: each of 128 heads takes a 576-wide dot product with the
    latent (512 + 64 rope) and sums 512-wide values: 2 x 128 x (2 x 512 + 64) FLOPs per pair, 3.4x the
    2 x 128 x (192 + 128) of its prefill; a GQA model decodes as it prefills."""
    deepseek = shape("deepseek-v3")
    assert deepseek.attn_flops_per_pair_per_layer == 2 * 128 * (192 + 128)
    assert deepseek.decode_attn_flops == 2 * 128 * (2 * 512 + 64)
    llama = shape("llama-3.1-70b")
    assert llama.decode_attn_flops == llama.attn_flops_per_pair_per_layer == 2 * 64 * (128 + 128)

"""Malformed Hugging Face config.json files (`model:` pointing at a path): the exact one-line error naming the
file and the key, when the scenario loads, exit 2."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, cli_error

from simulator.config.model_config import FAMILIES, ONE_OF, REQUIRED, TEXT_PART, check_model_config
from simulator.errors import ScenarioError
from simulator.hardware.model import _FAMILIES, model_shape

LLAMA = json.loads((REPO / "simulator" / "catalog" / "models" / "llama-3.1-8b.json").read_text())
ALLOWED = ("deepseek_v2, deepseek_v3, gemma, gemma2, gemma3, gemma3_text, gpt2, gpt_oss, gptj, llama, llama4, "
           "llama4_text, mistral, mixtral, opt, palm, phi3, qwen2, qwen2_moe, qwen3, qwen3_moe")


def config_error(tmp_path, write_scenario, content: str | bytes) -> str:
    path = tmp_path / "my-model" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    message = cli_error("explain", write_scenario({"model": str(path)}))
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize("changes, expected", [
    ({"hidden_size": "4096"}, "hidden_size: must be an integer from 1 to 2147483647, got '4096'"),
    ({"hidden_size": 4096.0}, "hidden_size: must be an integer from 1 to 2147483647, got 4096.0"),
    ({"hidden_size": 0}, "hidden_size: must be an integer from 1 to 2147483647, got 0"),
    ({"num_hidden_layers": -1}, "num_hidden_layers: must be an integer from 1 to 2147483647, got -1"),
    ({"num_hidden_layers": 10**12}, "num_hidden_layers: must be an integer from 1 to 2147483647, got 1000000000000"),
    ({"num_attention_heads": None}, "num_attention_heads: must be an integer from 1 to 2147483647, got None"),
    ({"vocab_size": True}, "vocab_size: must be an integer from 1 to 2147483647, got True"),
    ({"intermediate_size": -5}, "intermediate_size: must be an integer from 0 to 2147483647, got -5"),
    ({"head_dim": "x" * 500}, "head_dim: must be an integer from 1 to 2147483647 (or null), got "
                              "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...x'"),
    ({"model_type": "bert"}, f"model_type: 'bert' is not one of: {ALLOWED}"),
    ({"model_type": ["llama"]}, f"model_type: ['llama'] is not one of: {ALLOWED}"),
    ({"model_type": None}, f"model_type: required key is missing; allowed: {ALLOWED}"),
    ({"vocab_size": "DELETE"}, "vocab_size: required key is missing for model_type 'llama'"),
])
def test_config_values(tmp_path, write_scenario, changes, expected):
    config = {**LLAMA, **changes}
    config = {k: v for k, v in config.items() if v != "DELETE" and not (k == "model_type" and v is None)}
    assert config_error(tmp_path, write_scenario, json.dumps(config)) == expected


@pytest.mark.parametrize("content, expected", [
    ("", "not a readable JSON config: Expecting value: line 1 column 1 (char 0)"),
    ("{", "not a readable JSON config: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", "a config.json must hold a JSON object, got an array"),
    ("NaN", "a config.json must hold a JSON object, got a number"),
    (b"\xff{}", "line 1: byte 0xff is not UTF-8 text"),
    ("1" * 5000, "not a readable JSON config: Exceeds the limit (4300 digits) for integer string conversion: value "
                 "has 5000 digits; use sys.set_int_max_str_digits() to increase the limit"),
    ("[" * 100_000, "not a readable JSON config: nested too deeply"),
    ('{"model_type": "llama", "hidden_size": NaN, "num_hidden_layers": 2, "num_attention_heads": 2, '
     '"vocab_size": 10}', "hidden_size: must be an integer from 1 to 2147483647, got nan"),
])
def test_unreadable_config_files(tmp_path, write_scenario, content, expected):
    assert config_error(tmp_path, write_scenario, content) == expected


def test_a_draft_model_config_is_checked_too(tmp_path, write_scenario):
    path = tmp_path / "draft" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**LLAMA, "num_hidden_layers": "two"}))
    scenario = write_scenario({"serving.speculative": {"tokens": 2, "acceptance": 0.5, "draft_model": str(path)}})
    assert cli_error("run", scenario, "-o", tmp_path / "out") == \
        f"{path}: num_hidden_layers: must be an integer from 1 to 2147483647, got 'two'"


def test_the_required_keys_are_exactly_what_each_family_needs():
    """Each family's REQUIRED keys (with small integers) are enough for model_shape, and the families match."""
    assert tuple(sorted((*_FAMILIES, *TEXT_PART))) == FAMILIES  # multimodal configs are read as their text part
    for family, keys in REQUIRED.items():
        keys = [*keys, *(names[0] for names in ONE_OF.get(family, []))]
        config = check_model_config({"model_type": family, **dict.fromkeys(keys, 2)}, "c.json")
        assert model_shape(family, config).total_params > 0, family
        for key in keys:  # and each one is needed
            with pytest.raises(ScenarioError, match=f"^c.json: {key}: required key is missing for model_type "
                                                    f"'{family}'"):
                check_model_config({"model_type": family, **{k: 2 for k in keys if k != key}}, "c.json")

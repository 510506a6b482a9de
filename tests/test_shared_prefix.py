"""Shared system prompts and multi-turn conversations (workload.shared_prefix): prompt lengths, block identities,
the prefill a prefix cache skips, blocks reusable once prefill wrote them, and the nothing-to-reuse warning."""

import json

import numpy as np
import pytest
from conftest import cli_error
from typer.testing import CliRunner

from simulator import load_scenario, run
from simulator.workload.arrivals import generate

BLOCK = 16  # the deployment's default KV block (vLLM's)


def shared(write_scenario, prefix: dict, arrival: dict, n: int, text: int = 200, output: int = 20,
           caching: bool = True, name: str = "s.yaml"):
    return load_scenario(write_scenario({
        "serving.prefix_caching": caching,
        "workload": {"arrival": arrival, "prompt_tokens": {"kind": "fixed", "value": text},
                     "output_tokens": {"kind": "fixed", "value": output}, "num_requests": n,
                     "shared_prefix": prefix}}, name=name))


# nearly regular arrivals 2 s apart: each request is alone on the replica (its prefill takes ~10 ms)
SPACED = {"kind": "gamma", "rate": "0.5 /s", "cv": 0.01}


@pytest.mark.parametrize("users", [2, 5, 12])
def test_n_users_sharing_one_system_prompt_skip_n_minus_1_prompts_in_whole_blocks(write_scenario, users):
    system = 1000  # 62 whole blocks of 16 tokens (992 tokens) and 8 tokens in a block shared with the text
    result = run(shared(write_scenario, {"users_per_prompt": users, "system_prompt_tokens": system}, SPACED, users))
    skipped = (users - 1) * (system // BLOCK) * BLOCK
    assert result.summary["kv_cache"]["prefix_hit_tokens"] == skipped
    assert result.iterations["prefill_tokens"].sum() == users * (system + 200) - skipped
    assert list(result.requests.sort_values("request_id")["prefix_hit_tokens"]) == [0] + [992] * (users - 1)


def test_without_caching_nothing_is_skipped(write_scenario):
    result = run(shared(write_scenario, {"users_per_prompt": 4, "system_prompt_tokens": 1000}, SPACED, 4,
                        caching=False))
    assert result.summary["kv_cache"]["prefix_hit_tokens"] == 0
    assert result.iterations["prefill_tokens"].sum() == 4 * 1200


def test_each_users_system_prompt_is_shared_only_with_its_own_group(write_scenario):
    # 3 system prompts x 2 users, request i is user i mod 6's, user u reads system prompt u // 2: requests
    # 1, 3, 5 find their group's prompt cached; 0, 2, 4 are the first of their group
    result = run(shared(write_scenario, {"system_prompts": 3, "users_per_prompt": 2, "system_prompt_tokens": 640},
                        SPACED, 6))
    hits = list(result.requests.sort_values("request_id")["prefix_hit_tokens"])
    assert hits == [0, 640, 0, 640, 0, 640]


def test_a_turns_prompt_is_the_conversation_so_far_and_its_new_text(write_scenario):
    scenario = shared(write_scenario, {"system_prompts": 1, "users_per_prompt": 2, "system_prompt_tokens": 100,
                                       "turns": 3}, SPACED, 8, text=50, output=30)
    requests = generate(scenario.spec.workload, scenario.spec.seed)
    # users 0, 1 alternate; turns 0, 1, 2 of a conversation, then a new conversation
    expected = [100 + 50, 100 + 50, 100 + 80 + 50, 100 + 80 + 50, 100 + 160 + 50, 100 + 160 + 50, 150, 150]
    assert list(requests.prompt_tokens) == expected
    hashes, block = requests.block_hashes(BLOCK)
    assert block == BLOCK and hashes is not None
    # a turn's context starts with the previous turn's prompt and answer, block for block
    assert hashes[2][: (150 + 30) // BLOCK] == hashes[0]
    assert hashes[2][:6] == hashes[1][:6]  # the system prompt's 6 whole blocks, shared by the users
    assert hashes[2][6] != hashes[1][6]    # the block the system prompt shares with user text is not
    assert hashes[6][:7] != hashes[0][:7]  # a new conversation shares only the system prompt


def test_the_next_turn_reuses_the_previous_prompt_and_answer_in_a_closed_loop(write_scenario):
    # one user, conversations of 4 turns: turn t reuses every whole block of turn t - 1's prompt and answer
    # (the last generated token's KV-cache is never written)
    text, output = 300, 100
    scenario = shared(write_scenario, {"turns": 4, "system_prompt_tokens": 64},
                      {"kind": "closed_loop", "users": 1, "think_time": "1 s"}, 8, text=text, output=output)
    result = run(scenario)
    req = result.requests.sort_values("request_id")
    prompts = [64 + t * (text + output) + text for t in range(4)] * 2
    assert list(req["prompt_tokens"]) == prompts
    expected = [0] + [(p + output - 1) // BLOCK * BLOCK for p in prompts[:3]] + [64] \
        + [(p + output - 1) // BLOCK * BLOCK for p in prompts[4:7]]
    assert list(req["prefix_hit_tokens"]) == expected
    arrive = req["arrival_s"].to_numpy()
    assert np.all(arrive[1:] >= req["finish_s"].to_numpy()[:-1] + 1.0 - 1e-9)  # each turn after the last


def test_blocks_are_reusable_once_prefill_wrote_them_not_only_when_the_request_finishes(write_scenario):
    # the second user arrives while the first is still decoding its long answer: the system prompt is cached
    result = run(shared(write_scenario, {"users_per_prompt": 2, "system_prompt_tokens": 2048},
                        {"kind": "gamma", "rate": "2 /s", "cv": 0.01}, 2, output=2000))
    req = result.requests.sort_values("request_id")
    assert req["arrival_s"].iloc[1] < req["finish_s"].iloc[0]
    assert list(req["prefix_hit_tokens"]) == [0, 2048]


def test_the_same_seed_gives_the_same_block_hashes_and_another_seed_the_same_structure(write_scenario):
    scenario = shared(write_scenario, {"system_prompts": 2, "users_per_prompt": 3, "system_prompt_tokens": 500,
                                       "turns": 2}, {"kind": "poisson", "rate": "1 /s"}, 30,
                      text=100)
    a = generate(scenario.spec.workload, 1).block_hashes(BLOCK)[0]
    b = generate(scenario.spec.workload, 1).block_hashes(BLOCK)[0]
    assert a is not None and b is not None and list(a) == list(b)


def test_a_closed_loop_must_have_one_user_per_prefix_user(write_scenario):
    path = write_scenario({"workload.arrival": {"kind": "closed_loop", "users": 8},
                           "workload.shared_prefix": {"system_prompts": 3, "users_per_prompt": 2}})
    assert cli_error("run", path).endswith(
        "s.yaml: workload.shared_prefix: system_prompts x users_per_prompt is 6 but the closed loop has 8 "
        "users; allowed: equal numbers (each loop user is one prefix user)")


def test_a_trace_cannot_take_a_shared_prefix(write_scenario, tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}) + "\n")
    path = write_scenario({"workload": {"arrival": {"kind": "trace", "format": "mooncake", "path": str(trace)},
                                        "shared_prefix": {"users_per_prompt": 2}}})
    assert cli_error("run", path).endswith(
        "s.yaml: workload.shared_prefix: applies to synthetic arrivals, not a trace (a mooncake trace brings "
        "its own prefix hash_ids)")


WARNING = ("serving.prefix_caching is on but no two requests of workload 'inline' share a prefix block "
           "(no trace hash_ids, no workload.shared_prefix): nothing to reuse")


def test_caching_a_workload_with_nothing_to_reuse_warns_in_the_summary_and_on_stderr(write_scenario, tmp_path):
    from simulator.cli import app

    path = write_scenario({"serving.prefix_caching": True, "workload.num_requests": 20})
    outcome = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "out"), "--no-plots"])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stderr.strip().splitlines() == [f"warning: {WARNING}"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["warnings"] == [WARNING]


def test_a_prefix_with_nothing_shared_warns_too_and_a_shared_one_does_not(write_scenario):
    # system prompts shorter than a block and single turns: no whole block is ever shared
    alone = run(shared(write_scenario, {"users_per_prompt": 4, "system_prompt_tokens": 10}, SPACED, 8))
    assert alone.summary["warnings"] == [WARNING]
    assert "warnings" not in run(shared(write_scenario, {"users_per_prompt": 4, "system_prompt_tokens": 16},
                                        SPACED, 8, name="b.yaml")).summary
    assert "warnings" not in run(load_scenario(write_scenario({"workload.num_requests": 20}, name="c.yaml"))).summary

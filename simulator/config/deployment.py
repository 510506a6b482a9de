"""The `deployment:` section: how the model is laid onto the cluster (parallelism, dtypes, placement,
prefill/decode disaggregation)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from simulator.config.fields import DType, Fraction, Frozen


class PoolSpec(Frozen):
    """The parallelism of one pool of replicas (prefill or decode) under disaggregation."""
    tensor_parallel: int = Field(default=1, ge=1)
    pipeline_parallel: int = Field(default=1, ge=1)
    replicas: int = Field(default=1, ge=1)


class DisaggregationSpec(Frozen):
    """Prefill and decode on separate replicas (Splitwise, DistServe): the prefill pool's chips come first,
    the decode pool's after them; each request's KV-cache moves between them over the fabric."""
    prefill: PoolSpec
    decode: PoolSpec


class ExpertRoutingSpec(Frozen):
    """How tokens pick experts and how experts sit on the expert-parallel ranks (hardware/expert_routing.py).
    `skew`: Zipf exponent over each layer's experts (0: uniform routing). `balance: eplb` places the experts
    (and `redundant_experts` extra copies per layer, a multiple of expert_parallel) so that the ranks' expected
    loads are even, as DeepSeek's EPLB does; `none` keeps the checkpoint's order, contiguous blocks. `loads`:
    measured expert loads instead of a skew, a CSV file (relative to the scenario) with one line per MoE layer
    (or one line for all) of one non-negative number per expert; `#` lines are comments."""
    skew: float = Field(default=0.0, ge=0.0, le=10.0)
    loads: str | None = None
    balance: Literal["none", "eplb"] = "none"
    redundant_experts: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _copies_need_a_balancer(self) -> ExpertRoutingSpec:
        if self.redundant_experts and self.balance != "eplb":
            raise ValueError("redundant_experts needs balance: eplb (something must place the copies)")
        if self.loads is not None and self.skew:
            raise ValueError("give skew or loads, not both")
        return self


class DeploymentSpec(Frozen):
    """How the model is laid onto the cluster. Unset dtypes follow weights_dtype."""
    tensor_parallel: int = Field(default=1, ge=1)
    pipeline_parallel: int = Field(default=1, ge=1)
    # ranks over which the routed experts are spread whole: a divisor of tensor_parallel (each expert then
    # split over tensor_parallel / expert_parallel chips), or, with attention data parallelism, all
    # data_parallel_attention x tensor_parallel chips of a stage (wide EP)
    expert_parallel: int = Field(default=1, ge=1)
    # attention data-parallel ranks per replica (TRT-LLM "DEP", SGLang --enable-dp-attention): each rank runs
    # attention and the dense layers for its own share of the batch, with its own KV-cache, on tensor_parallel
    # chips; the routed experts are spread over all the stage's chips (expert_parallel = dp x tp) and each MoE
    # layer dispatches tokens to them and combines the results by all-to-all
    data_parallel_attention: int = Field(default=1, ge=1)
    expert_routing: ExpertRoutingSpec = ExpertRoutingSpec()
    micro_batches: int | None = Field(default=None, ge=1)  # per iteration with pipeline parallelism; None: pp
    # in_flight: micro-batches stay in the pipeline from one iteration to the next (vLLM's virtual engines,
    # TensorRT-LLM); flush: each iteration fills and drains it (GPipe-style)
    pipeline_schedule: Literal["in_flight", "flush"] = "in_flight"
    replicas: int = Field(default=1, ge=1)
    placement: Literal["packed", "strided"] = "packed"  # replica r on chips r*n.. (packed) or r, r+R, ..
    weights_dtype: DType = "bf16"
    kv_dtype: DType | None = None
    compute_dtype: DType | None = None
    memory_utilization: Fraction = 0.9  # share of each chip's memory the engine may use (vLLM's default)
    weight_streaming: bool = False  # weights too big for the fast tier stream from a larger, slower one
    disaggregated: DisaggregationSpec | None = None

    @model_validator(mode="after")
    def _one_place_for_parallelism(self) -> DeploymentSpec:
        if self.disaggregated and (self.tensor_parallel, self.pipeline_parallel, self.replicas) != (1, 1, 1):
            raise ValueError("with disaggregated pools, set tensor_parallel, pipeline_parallel and replicas under "
                             "disaggregated.prefill and disaggregated.decode, not at the top")
        return self
    kv_block_tokens: int = Field(default=16, ge=1)

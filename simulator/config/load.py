"""Read scenario, topology, workload and catalog files into validated specs, with one-line errors.

References are resolved by name: `cluster: hgx-h100` reads `topologies/hgx-h100.yaml` and `workload: chat`
reads `workloads/chat.yaml`, searched upward from the scenario file; a path to a file works too.
`model:` names a catalog model or points at a Hugging Face config.json.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from simulator.config import files, limits
from simulator.config.cluster import ChipSpec, EngineSpec
from simulator.config.cost import cost_basis
from simulator.config.model_config import check_model_config
from simulator.config.scenario import ScenarioSpec
from simulator.config.shipped import shipped_dir
from simulator.config.workload import WorkloadSpec, span_problem
from simulator.errors import ScenarioError, brief

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog"


@dataclass(frozen=True)
class Scenario:
    """A validated scenario with its catalog entries resolved: what every later stage takes."""
    spec: ScenarioSpec
    chip: ChipSpec
    model_name: str
    model_config: Mapping[str, Any]
    file: str
    origins: Mapping[str, str] = field(default_factory=dict)  # top-level key -> file it came from
    chip_origin: str = "catalog"  # or the user's chip YAML path, or "inline in <file>" (config/user_chip.py)


# ---------------------------------------------------------------- YAML

MAX_INT = 2**63 - 1
MAX_YAML_BYTES = files.MAX_YAML_BYTES  # an input YAML file; traces, which may be large, are CSV or JSON lines
MAX_YAML_VALUES = 1_000_000  # values in a YAML file once its aliases are expanded (a "billion laughs" bomb)


def read_yaml(path: Path) -> dict[str, Any]:
    """Safe-load a YAML mapping (plain data only: no tags that build objects, nothing evaluated); any problem
    is a ScenarioError naming the file."""
    text = files.read_text(path, MAX_YAML_BYTES, what="YAML file")
    try:
        data = parse_yaml(text)
    except ScenarioError as exc:
        raise exc.with_file(str(path)) from None
    if not isinstance(data, dict):
        raise ScenarioError("", f"must be a YAML mapping of keys to values, got {type(data).__name__}",
                            str(path))
    return data


class NotYaml(ScenarioError):
    """Text that YAML cannot even parse (a --set value may then be taken as the text itself)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says keys are unique; PyYAML
    would silently keep the last). A key from a merge (`<<: *base`) may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and not key_node.tag.endswith(":merge"):
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {brief(key)} appears twice",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """YAML text (a file's, a --set value's, a sweep override's) to plain data, with the same caps for all:
    safe tags only, unique keys, nesting within Python's recursion limit, aliases expanding to at most
    MAX_YAML_VALUES values and never into themselves. Problems: a ScenarioError without a file."""
    try:
        loader = _UniqueKeyLoader(text)  # a SafeLoader: plain data only
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        error = ScenarioError if isinstance(exc, yaml.constructor.ConstructorError) else NotYaml
        raise error("", f"{line}invalid YAML: {problem}") from None
    except RecursionError:
        raise ScenarioError("", "invalid YAML: nested too deeply") from None
    try:
        values = _expanded_size(data, {}, set())
    except RecursionError:
        raise ScenarioError("", "invalid YAML: nested too deeply") from None
    if values < 0:
        raise ScenarioError("", "invalid YAML: an alias (*name) refers to the node that contains it")
    if values > MAX_YAML_VALUES:
        raise ScenarioError("", f"holds {values:.3g} values once its aliases (*name) are expanded; allowed: "
                            f"up to {MAX_YAML_VALUES}")
    return data


def _expanded_size(node: Any, seen: dict[int, int], open_: set[int]) -> int:
    """How many values `node` holds with every alias expanded, counting each shared node once per use but
    visiting it once: cheap even when the expansion is astronomically large. -1: a node contains itself."""
    if not isinstance(node, (dict, list)):
        return 1
    if id(node) in open_:
        return -1
    if id(node) not in seen:
        open_.add(id(node))
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        sizes = [_expanded_size(child, seen, open_) for child in children]
        open_.discard(id(node))
        seen[id(node)] = -1 if -1 in sizes else 1 + sum(sizes)
    return seen[id(node)]


def is_file(path: str | Path) -> bool:
    """Path.is_file() for a path taken from an input: False, not an exception, for a name too long for the
    file system or with a NUL byte in it."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _exists(path: str | Path) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def is_dir(path: str | Path) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def find_dir(name: str, start: Path) -> Path | None:
    """The nearest folder called `name` in `start` or one of its parents (project data folders)."""
    for folder in (start, *start.parents):
        candidate = folder / name
        if is_dir(candidate):
            return candidate
    return None


def _resolve_ref(value: str, folder: str, base: Path, field_name: str, file: str) -> Path:
    direct = Path(value)
    candidates = [direct if direct.is_absolute() else base / direct, Path.cwd() / direct]
    data_dir = find_dir(folder, base) or find_dir(folder, Path.cwd()) or shipped_dir(folder)
    if data_dir is not None:
        candidates += [data_dir / value, data_dir / f"{value}.yaml"]
    shipped = shipped_dir(folder)  # a shipped name works from any folder, after the user's own
    if shipped is not None and shipped != data_dir:
        candidates += [shipped / value, shipped / f"{value}.yaml"]
    for candidate in candidates:
        if is_file(candidate):
            return candidate
    known = sorted(p.stem for p in data_dir.glob("*.yaml")) if data_dir else []
    allowed = f"one of: {', '.join(known)}" if known else f"a YAML file path (no {folder}/ folder found)"
    raise ScenarioError(field_name, f"{brief(value)} is not {allowed}", file)


# ---------------------------------------------------------------- overrides

def parse_override(text: str) -> tuple[list[str], Any]:
    """'serving.batcher.max_batch_size=64' -> (['serving', 'batcher', 'max_batch_size'], 64)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ScenarioError("--set", f"{brief(text)} must look like dotted.key=value")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except NotYaml:
        value = raw  # not YAML: the text itself (a name with a colon, say)
    except ScenarioError as exc:
        raise ScenarioError("--set", f"{brief(text)}: {exc.problem}") from None
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `value` at the dotted `path`, making mappings on the way. A list of mappings (a chip's memory tiers)
    is entered by an element's `tier:` or `name:` (`memory.hbm.bandwidth`) or by its index."""
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        child = _list_item(node, part, path, depth) if isinstance(node, list) else node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, (dict, list)):
            where = ".".join(path[: depth + 1])
            raise ScenarioError("--set", f"{'.'.join(path)}: {where} is {brief(child)}, not a mapping")
        node = child
    if isinstance(node, list):
        names = [str(item.get("tier", item.get("name"))) for item in node if isinstance(item, dict)]
        raise ScenarioError("--set", f"{'.'.join(path)}: {'.'.join(path[:-1])} is a list; name one of its items "
                            f"before the field: {', '.join(names) or 'an index'}")
    node[path[-1]] = value


def _list_item(items: list[Any], part: str, path: list[str], depth: int) -> Any:
    names = [item.get("tier", item.get("name")) if isinstance(item, dict) else None for item in items]
    if part in names:
        return items[names.index(part)]
    if part.isdigit() and int(part) < len(items):
        return items[int(part)]
    allowed = ", ".join(str(n) for n in names if n is not None) or f"0 to {len(items) - 1}"
    raise ScenarioError("--set", f"{'.'.join(path)}: {'.'.join(path[:depth])} has no {brief(part)}; allowed: "
                        f"{allowed}")


# ---------------------------------------------------------------- pydantic errors -> one line

def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Walk the schema along `loc` to list the keys allowed where an unknown key was found."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = _model_in(fields[part].annotation)
        if current is None:
            return None
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
    field_name = ".".join(str(p) for p in loc)
    kind = error["type"]
    got = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        return field_name, "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return field_name, "required key is missing"
    if kind == "literal_error":
        return field_name, f"{brief(got)} is not one of: {_choices(ctx.get('expected', ''))}"
    if kind == "union_tag_invalid":
        return field_name + ".kind", f"{brief(ctx.get('tag'))} is not one of: {_choices(ctx.get('expected_tags', ''))}"
    if kind == "union_tag_not_found":
        return field_name, "needs a 'kind:' key"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "?")
        return field_name, f"must be {op} {bound}, got {brief(got)}"
    if kind == "int_from_float":
        return field_name, f"must be an integer, got {brief(got)}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        return field_name, (f"must have at {'least' if kind == 'too_short' else 'most'} {bound} "
                            f"item{'s' * (bound != 1)}, got {ctx.get('actual_length')}")
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind.endswith(("_type", "_parsing")):
        message = f"{message[0].lower()}{message[1:]}, got {brief(got)}"
    key, sep, rest = message.partition(": ")  # a relation between keys, said of one of them: name that key
    if kind == "value_error" and sep and key in (_allowed_keys(model, (*loc, "")) or ()):
        return f"{field_name}.{key}" if field_name else key, rest
    return field_name, message


_UNION_TAGS = {"fixed", "uniform", "lognormal", "empirical", "poisson", "gamma", "on_off", "daily",
               "closed_loop", "offline", "trace", "continuous", "static", "function-after[_ordered(), UniformLength]",
               "round_robin", "least_outstanding_tokens", "shortest_queue", "affinity"}


def _choices(expected: str) -> str:
    names = sorted(part.strip().strip("'\"") for part in expected.replace(" or ", ",").split(","))
    return ", ".join(n for n in names if n)


def validate(model: type[BaseModel], data: Mapping[str, Any], file: str,
             origins: Mapping[str, str] | None = None) -> Any:
    """Validate `data` as `model`; the first problem becomes a one-line ScenarioError, naming the file a
    referenced part (`origins`: top-level key -> its file) came from."""
    try:
        _reject_non_finite(data, [], file)
        return model.model_validate(data)
    except ScenarioError as exc:
        raise _located(exc.field, exc.problem, file, origins) from None
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise _located(*_describe(error, model), file, origins) from None


def _located(field_name: str, problem: str, file: str, origins: Mapping[str, str] | None) -> ScenarioError:
    head, _, rest = field_name.partition(".")
    if origins and head in origins:
        return ScenarioError(rest, problem, origins[head])
    return ScenarioError(field_name, problem, file)


def _reject_non_finite(node: Any, path: list[str], file: str) -> None:
    """NaN, infinities and integers beyond 64 bits are refused wherever they appear: no count, size or rate
    the simulator reads is meaningful there, and numpy could not hold them."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ScenarioError(".".join(path), f"must be a finite number, got {brief(node)}", file)
    if isinstance(node, int) and not isinstance(node, bool) and not -MAX_INT <= node <= MAX_INT:
        raise ScenarioError(".".join(path), f"{brief(node)} is too large; allowed: integers of at most 64 bits "
                            f"(|n| <= {MAX_INT})", file)
    if isinstance(node, dict):
        for key, value in node.items():
            _reject_non_finite(value, [*path, str(key)], file)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _reject_non_finite(value, [*path, str(index)], file)


# ---------------------------------------------------------------- catalog

def chip_ids() -> list[str]:
    return sorted(p.stem for p in (CATALOG_DIR / "chips").glob("*.yaml"))


def model_ids() -> list[str]:
    return sorted(p.stem for p in (CATALOG_DIR / "models").glob("*.json"))


def load_chip(chip_id: str, field_name: str = "chip", file: str | None = None) -> ChipSpec:
    path = CATALOG_DIR / "chips" / f"{chip_id}.yaml"
    if chip_id not in chip_ids():  # a catalog id, never a path that walks out of the catalog
        raise ScenarioError(field_name, f"{brief(chip_id)} is not one of: {', '.join(chip_ids())}", file)
    return validate(ChipSpec, read_yaml(path), str(path))


@functools.cache  # read once per process: profiles are consulted per run, per parameter draw and per trial
def load_engine(engine_id: str) -> EngineSpec:
    """A serving engine's profile from the catalog (its id is validated by `serving.engine`)."""
    path = CATALOG_DIR / "engines" / f"{engine_id}.yaml"
    return validate(EngineSpec, read_yaml(path), str(path))


def sequence_overhead_s(chip: ChipSpec, engine_id: str) -> float:
    """Host time per sequence that yields a token per step: the chip family's fitted value for the engine,
    else the engine profile's default."""
    fitted = chip.efficiency.sequence_overhead.get(engine_id)
    return fitted if fitted is not None else load_engine(engine_id).sequence_overhead


def engine_step_overhead_s(chip: ChipSpec, engine_id: str) -> float:
    """Host time per step the engine adds to the chip's step overhead: the chip family's fitted value for the
    engine, else the engine profile's default."""
    fitted = chip.efficiency.engine_step_overhead.get(engine_id)
    return fitted if fitted is not None else load_engine(engine_id).step_overhead


def load_model_config(ref: str, base: Path, file: str) -> tuple[str, dict[str, Any]]:
    """A catalog model id, or a path to a Hugging Face config.json -> (name, config dict)."""
    path = CATALOG_DIR / "models" / f"{ref}.json"
    name = ref
    if not is_file(path):
        direct = Path(ref) if Path(ref).is_absolute() else base / ref
        if not (ref.endswith(".json") and (is_file(direct) or _exists(direct))):  # a FIFO: files.py says so
            raise ScenarioError("model", f"{brief(ref)} is not a catalog model ({', '.join(model_ids())}) "
                                "nor a path to a config.json", file)
        path, name = direct, direct.parent.name if direct.name == "config.json" else direct.stem
    text = files.read_text(path, files.MAX_JSON_BYTES, what="config.json")
    try:
        config = json.loads(text)
    except ValueError as exc:  # bad JSON, an integer of 5000 digits
        raise ScenarioError("", f"not a readable JSON config: {exc}", str(path)) from None
    except RecursionError:
        raise ScenarioError("", "not a readable JSON config: nested too deeply", str(path)) from None
    return name, dict(check_model_config(config, str(path)))


def load_topology(ref: str, base: Path) -> tuple[dict[str, Any], str]:
    path = _resolve_ref(ref, "topologies", base, "cluster", str(base))
    return read_yaml(path), str(path)


# ---------------------------------------------------------------- scenario

def _resolve_refs(data: dict[str, Any], base: Path, file: str, origins: dict[str, str]) -> None:
    """Replace `cluster:` and `workload:` names by the mappings in their files, noting where each came from."""
    for key, folder in (("cluster", "topologies"), ("workload", "workloads")):
        if isinstance(data.get(key), str):
            ref_path = _resolve_ref(data[key], folder, base, key, file)
            data[key] = read_yaml(ref_path)
            origins[key] = str(ref_path)
            if key == "workload":
                absolute_trace_paths(data[key], ref_path.resolve().parent)
    if isinstance(data.get("workload"), dict):  # an inline workload: paths relative to the scenario file
        absolute_trace_paths(data["workload"], base)


def absolute_trace_paths(node: Any, base: Path) -> None:
    """Make each `path:` of a trace arrival or empirical length absolute, relative to the file it is in."""
    if isinstance(node, dict):
        if node.get("kind") in ("trace", "empirical") and isinstance(node.get("path"), str):
            node["path"] = str(base / Path(node["path"]).expanduser())
        for value in node.values():
            absolute_trace_paths(value, base)
    elif isinstance(node, list):
        for value in node:
            absolute_trace_paths(value, base)


def load_workload(path: str | Path) -> tuple[WorkloadSpec, int, str]:
    """A workload file, or a scenario file's workload -> (spec, seed, name), trace paths made absolute."""
    path = Path(path)
    data = read_yaml(path)
    if "model" in data and "workload" in data:
        spec = load_scenario(path).spec
        return spec.workload, spec.seed, spec.name
    absolute_trace_paths(data, path.resolve().parent)
    workload: WorkloadSpec = validate(WorkloadSpec, data, str(path))
    requests = limits.workload_requests(workload)
    if requests > limits.MAX_DESCRIBE_REQUESTS:
        raise ScenarioError("", f"{requests:.3g} requests to generate; allowed: up to "
                            f"{limits.MAX_DESCRIBE_REQUESTS:.0e} from a workload file (describe a scenario that uses "
                            "it to go further, within that scenario's limits)", str(path))
    problem = span_problem(workload)
    if problem:
        raise ScenarioError("", problem.removeprefix("workload: "), str(path))
    return workload, 0, workload.name or path.stem


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Scenario file (+ dotted overrides) -> Scenario with its topology, workload, chip and model resolved."""
    path = Path(path)
    return load_scenario_dict(read_yaml(path), str(path), path.resolve().parent, overrides)


def load_scenario_dict(data: Mapping[str, Any], file: str, base_dir: str | Path,
                       overrides: list[str] | None = None) -> Scenario:
    """A scenario mapping built in code (a compare point) -> Scenario, through the same validation as a file.
    `file` names it in errors; references (topologies/, workloads/, model paths) resolve from `base_dir`."""
    tree = copy.deepcopy(dict(data))  # resolving references and overrides edits it in place
    base = Path(base_dir).resolve()
    origins: dict[str, str] = {}
    _resolve_refs(tree, base, file, origins)
    for text in overrides or []:
        keys, value = parse_override(text)
        cluster = tree.get("cluster")
        if keys[:2] == ["cluster", "chip"] and len(keys) > 2 and isinstance(cluster, dict) \
                and isinstance(cluster.get("chip"), (str, dict)):
            from simulator.config.user_chip import chip_fields  # it builds on this module's readers

            chip_file = origins.get("cluster", file)  # a field of the chip: the whole chip, to be changed
            chip_base = Path(chip_file).resolve().parent if "cluster" in origins else base
            cluster["chip"] = chip_fields(cluster["chip"], chip_base, chip_file, "cluster.chip")
        apply_override(tree, keys, value)
        if len(keys) > 1:
            origins.pop(keys[0], None)  # a value overridden inside a referenced file is the scenario's now
        else:
            _resolve_refs(tree, base, file, origins)  # a named workload or topology, for later keys to reach in
    _resolve_refs(tree, base, file, origins)  # an override may itself name a topology or workload
    routing = tree.get("deployment", {}).get("expert_routing") if isinstance(tree.get("deployment"), dict) else None
    if isinstance(routing, dict) and isinstance(routing.get("loads"), str):  # relative to the scenario file
        routing["loads"] = str(base / Path(routing["loads"]).expanduser())
    from simulator.config.user_chip import CATALOG, resolve_chip  # it builds on this module's readers

    chip_file = origins.get("cluster", file)
    chip_field = "chip" if "cluster" in origins else "cluster.chip"
    cluster = tree.get("cluster")
    user_chip = None
    if isinstance(cluster, dict) and "chip" in cluster and not (isinstance(cluster["chip"], str)
                                                                and cluster["chip"] in chip_ids()):
        chip_base = Path(chip_file).resolve().parent if "cluster" in origins else base
        user_chip = resolve_chip(cluster["chip"], chip_base, chip_file, chip_field)
        cluster["chip"] = user_chip[0].id
    spec: ScenarioSpec = validate(ScenarioSpec, tree, file, origins)
    chip, chip_origin = user_chip or (load_chip(spec.cluster.chip, chip_field, chip_file), CATALOG)
    cost_basis(spec.cost, chip, file)  # an explicit cost.prefer the prices cannot meet is refused here
    model_name, model_config = load_model_config(spec.model, base, file)
    return Scenario(spec=spec, chip=chip, model_name=model_name, model_config=model_config,
                    file=file, origins=origins, chip_origin=chip_origin)

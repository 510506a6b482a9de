"""A chip the user writes: `cluster.chip` as a catalog id, a path to a chip YAML, or a mapping, where a YAML or
mapping may say `extends: <catalog id or chip YAML>` and give only the fields it changes. `--set
cluster.chip.<field>=...` turns a catalog id into such a mapping. Every chip is validated as catalog chips
are (ChipSpec, unknown keys refused with the allowed ones); the run records where its chip came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.config.cluster import ChipSpec
from simulator.config.load import CATALOG_DIR, chip_ids, is_file, load_chip, read_yaml, validate
from simulator.errors import ScenarioError, brief

CATALOG = "catalog"


def resolve_chip(ref: Any, base: Path, file: str, field_name: str) -> tuple[ChipSpec, str]:
    """(chip, where it came from: "catalog", the chip YAML's path, or "inline in <file>")."""
    if isinstance(ref, str) and is_file(CATALOG_DIR / "chips" / f"{ref}.yaml"):
        return load_chip(ref, field_name, file), CATALOG
    if isinstance(ref, str):
        path = _chip_path(ref, base)
        if path is None:
            raise ScenarioError(field_name, f"{brief(ref)} is not a catalog chip ({', '.join(chip_ids())}) nor a "
                                "path to a chip YAML", file)
        data = _expand(read_yaml(path), path.resolve().parent, str(path), "")
        return validate(ChipSpec, data, str(path)), str(path)
    if isinstance(ref, dict):
        data = _expand(ref, base, file, field_name + ".")
        try:
            chip = validate(ChipSpec, data, file)
        except ScenarioError as exc:
            raise ScenarioError(f"{field_name}.{exc.field}" if exc.field else field_name, exc.problem, file) from None
        return chip, f"inline in {file}"
    raise ScenarioError(field_name, f"must be a catalog chip id, a chip YAML path or a mapping, got {brief(ref)}",
                        file)


def chip_fields(ref: str | dict[str, Any], base: Path, file: str, field_name: str) -> dict[str, Any]:
    """Every field of a chip (a catalog id, a chip YAML path or a mapping), its `extends:` chain merged, so that
    `--set cluster.chip.<field>` can reach any of them, a memory tier's included; a chip so changed is renamed
    `<id>-modified` unless the mapping names its own id."""
    if isinstance(ref, dict):
        return _expand(ref, base, file, field_name + ".") if "extends" in ref else dict(ref)
    return _expand({"extends": ref}, base, file, field_name + ".")


def _chip_path(ref: str, base: Path) -> Path | None:
    direct = Path(ref).expanduser()
    for candidate in (direct if direct.is_absolute() else base / direct, Path.cwd() / direct):
        if ref.endswith((".yaml", ".yml")) and is_file(candidate):
            return candidate
    return None


def _expand(data: dict[str, Any], base: Path, file: str, prefix: str) -> dict[str, Any]:
    """A chip mapping with its `extends:` chain merged under it (the mapping's own keys win)."""
    own = dict(data)
    parent = own.pop("extends", None)
    if parent is None:
        return own
    if not isinstance(parent, str):
        raise ScenarioError(f"{prefix}extends", f"must be a catalog chip id or a chip YAML path, got {brief(parent)}",
                            file)
    if is_file(CATALOG_DIR / "chips" / f"{parent}.yaml"):
        inherited = read_yaml(CATALOG_DIR / "chips" / f"{parent}.yaml")
    else:
        path = _chip_path(parent, base)
        if path is None:
            raise ScenarioError(f"{prefix}extends", f"{brief(parent)} is not a catalog chip ({', '.join(chip_ids())})"
                                " nor a path to a chip YAML", file)
        if prefix.count("extends") > 8:
            raise ScenarioError(f"{prefix}extends", "chain is longer than 8 chips (a cycle?)", file)
        inherited = _expand(read_yaml(path), path.resolve().parent, str(path), prefix + "extends.")
    merged = _merge(inherited, own)
    if "power" in own and "no_power" not in own:  # figures given where the parent had none
        merged.pop("no_power", None)
    if "id" not in own:
        merged["id"] = f"{inherited.get('id', parent)}-modified"
    return merged


def _merge(below: dict[str, Any], above: dict[str, Any]) -> dict[str, Any]:
    """Mappings merged key by key, `above` winning; lists and values replaced whole."""
    out = dict(below)
    for key, value in above.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out

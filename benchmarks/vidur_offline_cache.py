"""Lay out the shared Vidur profiles as an offline Hugging Face dataset cache for vidur 0.0.26.

The profiles in /work/shared/data/vidur-profiles become datasets that Vidur finds with HF_HUB_OFFLINE=1
(see benchmarks/vidur_side_by_side.md).

    python benchmarks/vidur_offline_cache.py CACHE_DIR [--profiles DIR]

CACHE_DIR is the directory passed to Vidur as --random_forrest_execution_time_predictor_config_cache_dir.
Vidur calls huggingface_hub.snapshot_download(repo_id, repo_type="dataset",
cache_dir=f"{CACHE_DIR}/profiling_data/{compute|network}/") and reads mlp.csv.xz, attention.csv.xz,
all_reduce.csv.xz, send_recv.csv.xz and config.json from the returned snapshot; offline, snapshot_download
resolves refs/main to a snapshot folder. This script writes, for each dataset,

    CACHE_DIR/profiling_data/<kind>/datasets--<org>--<name>/refs/main          (the revision, no newline)
    CACHE_DIR/profiling_data/<kind>/datasets--<org>--<name>/snapshots/<revision>/{config.json, *.csv.xz}

The dataset names are local ones (nothing by these names exists on the Hub); pass them to Vidur with
--random_forrest_execution_time_predictor_config_{model,network}_profiling_dataset. Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import lzma
from pathlib import Path

COMPUTE_DATASET = "local/vidur-a100-llama-2-70b"
NETWORK_DATASET = "local/vidur-a100-dgx"

# dataset name -> (kind, config.json checked by Vidur, {file in the snapshot: shared gzip file})
DATASETS = {
    COMPUTE_DATASET: ("compute", {"model": "meta-llama/Llama-2-70b-hf", "device_sku": "a100"},
                      {"mlp.csv.xz": "a100_llama2_70b_mlp.csv.gz", "attention.csv.xz": "a100_tp2_attention.csv.gz"}),
    NETWORK_DATASET: ("network", {"sku": "a100_dgx"},
                      {"all_reduce.csv.xz": "a100_dgx_all_reduce.csv.gz",
                       "send_recv.csv.xz": "a100_dgx_send_recv.csv.gz"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--profiles", type=Path, default=Path("/work/shared/data/vidur-profiles"))
    args = parser.parse_args()

    for repo_id, (kind, config, files) in DATASETS.items():
        csvs = {name: gzip.decompress((args.profiles / src).read_bytes()) for name, src in files.items()}
        revision = hashlib.sha1(b"".join(csvs[name] for name in sorted(csvs))).hexdigest()
        repo = args.cache_dir / "profiling_data" / kind / ("datasets--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)  # read back verbatim: no trailing newline
        (snapshot / "config.json").write_text(json.dumps({"schema_version": "1.0", **config}, indent=2))
        for name, data in csvs.items():
            (snapshot / name).write_bytes(lzma.compress(data))
        print(f"{repo_id}: {snapshot} ({', '.join(sorted(csvs))})")


if __name__ == "__main__":
    main()

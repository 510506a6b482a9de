"""Cut the trace slices in this folder from the full traces: `python workloads/traces/cut_slices.py SRC`.

SRC holds the originals in the layout of the project's shared trace folder (azure-llm-2023/,
mooncake-fast25/, servegen/, sharegpt-lengths/, all gzip-compressed). Rows are copied byte for byte; only
ServeGen's dataset lines are re-serialised (same keys and string values, compact JSON) after dropping the
windows not used. Output gzip files carry no timestamp, so the same input gives the same bytes.
"""

import gzip
import json
import sys
from datetime import datetime
from pathlib import Path

OUT = Path(__file__).resolve().parent


def gz_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as handle:
        handle.write(data)


def gz_read(path: Path) -> bytes:
    with gzip.open(path) as handle:
        return handle.read()


def azure(src: Path, name: str, minutes: int) -> None:
    """Header + every row less than `minutes` after the first row (rows are sorted by time)."""
    lines = [line for line in gz_read(src / f"azure-llm-2023/AzureLLMInferenceTrace_{name}.csv.gz")
             .split(b"\r\n") if line]
    first = datetime.fromisoformat(lines[1].split(b",")[0].decode()[:26])
    def seconds(line: bytes) -> float:
        return (datetime.fromisoformat(line.split(b",")[0].decode()[:26]) - first).total_seconds()

    keep = [line for line in lines[1:] if seconds(line) < minutes * 60]
    (OUT / "azure").mkdir(exist_ok=True)
    (OUT / "azure" / f"{name}.csv").write_bytes(b"\r\n".join([lines[0], *keep]) + b"\r\n")


def mooncake(src: Path) -> None:
    """Lines with timestamp < 600,000 ms: the first 10 minutes."""
    lines = gz_read(src / "mooncake-fast25/conversation_trace.jsonl.gz").split(b"\n")
    keep = [line for line in lines if line and json.loads(line)["timestamp"] < 600_000]
    gz_write(OUT / "mooncake" / "conversation.jsonl.gz", b"\n".join(keep) + b"\n")


def sharegpt(src: Path) -> None:
    """Header + the first 2,000 rows."""
    name = "sharegpt-lengths/sharegpt_8k_filtered_stats_llama2_tokenizer.csv.gz"
    lines = gz_read(src / name).split(b"\n")
    (OUT / "sharegpt").mkdir(exist_ok=True)
    (OUT / "sharegpt" / "lengths.csv").write_bytes(b"\n".join(lines[:2001]) + b"\n")


def servegen(src: Path) -> None:
    """deepseek-r1, 12:00-13:00 (windows 43200..46200): the 10 clients with the most requests in that hour."""
    rows = [row for row in gz_read(src / "servegen/reason-deepseek-r1/trace.csv.gz").split(b"\n") if row]
    hour = [r for r in rows[1:] if 43200 <= int(r.split(b",")[1]) < 46800]
    load: dict[int, float] = {}
    for row in hour:
        cells = row.split(b",")
        load[int(cells[0])] = load.get(int(cells[0]), 0.0) + float(cells[2]) * 600
    top = sorted(load, key=lambda c: (-load[c], c))[:10]
    out = OUT / "servegen" / "deepseek-r1"
    chosen = [r for r in hour if int(r.split(b",")[0]) in top]
    gz_write(out / "trace.csv.gz", b"\n".join([rows[0], *chosen]) + b"\n")
    kept = []
    for text in gz_read(src / "servegen/reason-deepseek-r1/dataset.jsonl.gz").decode().splitlines():
        client = json.loads(text)
        if client["client_id"] in top:
            windows = {"43200": client["windows"]["43200"]}
            line = {"client_id": client["client_id"], "windows": windows}
            kept.append(json.dumps(line, separators=(",", ":")))
    gz_write(out / "dataset.jsonl.gz", ("\n".join(kept) + "\n").encode())


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/traces")
    azure(source, "code", 20)
    azure(source, "conv", 10)
    mooncake(source)
    sharegpt(source)
    servegen(source)

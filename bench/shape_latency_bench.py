"""Speed-up of each catalogue student over a teacher shape at batch 1 on this CPU, timed in alternation.

Random-weight models (speed depends on shape, not weights) over the vocabulary of all bundled train
text, with each task's head, at each task's median test length. Every round times every model in turn
(so drift on a shared machine touches all alike); per model the median over rounds of two figures:
the wall-clock p50 of `--runs` forwards (`distill.latency.measure_latency`, what `zhkd evaluate`
reports) and the median CPU time of one forward with one thread (what a core of its own would take:
the steadier figure while other work runs). Writes bench/measurements/shape_latency.json, one record
per thread count (`threads_1`, `threads_2`).

    python bench/shape_latency_bench.py [--teacher small] [--students mini,micro] [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).parent / "measurements" / "shape_latency.json"


def main() -> None:
    import torch

    from zhkd.demo import DEMO_TASKS, sample_rows
    from zhkd.distill.latency import measure_latency
    from zhkd.distill.students import build_model, parameter_count
    from zhkd.models import char_vocab
    from zhkd.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="small")
    parser.add_argument("--students", default="mini,micro")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    texts, lengths = [], {}
    for spec in DEMO_TASKS:
        rows = sample_rows(spec.corpus, "train", 0)
        texts += ["".join(r["tokens"]) if "tokens" in r else r["text"] for r in rows]
        test = sample_rows(spec.corpus, "test", 0)
        # characters plus [CLS] and [SEP]: the median token length of the test split under a character vocabulary
        lengths[spec.task] = int(statistics.median_low(
            len(r["tokens"]) if "tokens" in r else len(r["text"]) for r in test)) + 2
    vocab_size = len(char_vocab(texts))
    load_before = os.getloadavg()
    results: dict = {"teacher": args.teacher, "vocab_size": vocab_size, "tasks": {}}
    for spec in DEMO_TASKS:
        kind, seq_len = get_task(spec.task).model_kind, lengths[spec.task]
        names = [args.teacher, *args.students.split(",")]
        models = {name: build_model(name, kind=kind, vocab_size=vocab_size, num_labels=7).eval() for name in names}
        ids = torch.randint(5, vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(0))
        wall = {name: [] for name in names}
        cpu = {name: [] for name in names}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for name, model in models.items():
                    wall[name].append(measure_latency(model, seq_len=seq_len, batch_size=1, runs=args.runs,
                                                      device="cpu").p50_ms)
                    for _ in range(args.runs):
                        started = time.process_time()
                        model(input_ids=ids, attention_mask=torch.ones_like(ids))
                        cpu[name].append((time.process_time() - started) * 1e3)
        figures = {name: {"parameters": parameter_count(models[name]), "wall_p50_ms": statistics.median(wall[name]),
                          "cpu_ms": statistics.median(cpu[name])} for name in names}
        teacher = figures[args.teacher]
        for name in names:
            f = figures[name]
            f.update(speedup_wall=teacher["wall_p50_ms"] / f["wall_p50_ms"],
                     speedup_cpu=teacher["cpu_ms"] / f["cpu_ms"], compression=teacher["parameters"] / f["parameters"])
            print(f"{spec.task:14s} {name:6s} seq {seq_len}: {f['cpu_ms']:6.2f} CPU ms ({f['speedup_cpu']:4.1f}x), "
                  f"wall p50 {f['wall_p50_ms']:6.2f} ms ({f['speedup_wall']:4.1f}x), {f['compression']:.1f}x smaller",
                  flush=True)
        results["tasks"][spec.task] = {"seq_len": seq_len, "models": figures}
    results.update(rounds=args.rounds, runs=args.runs, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   machine={"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                            "load_average_before": load_before, "load_average_after": os.getloadavg()})
    recorded = json.loads(RESULTS.read_text("utf-8")) if RESULTS.exists() else {}
    recorded = recorded if "tasks" not in recorded else {"threads_1": recorded}  # the first layout: one thread
    recorded[f"threads_{args.threads}"] = results
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(recorded, indent=1) + "\n", encoding="utf-8")
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()

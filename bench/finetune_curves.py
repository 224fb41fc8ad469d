"""Dev curves of finished `zhkd finetune` runs, gathered per variant and compared epoch by epoch.

`zhkd finetune --dev` scores the dev split after every epoch into its `log.jsonl`. This script reads the
logs of several runs of each variant (one run per seed, the same settings but the seed), and writes
per epoch each run's dev score, the variant's mean with its 95% interval over seeds, and, against the
first variant, the paired difference per seed with its interval. Only what the logs say is used: the
settings of each run come from its own `stage_start` event, and runs of one variant must agree on them
(seed aside), so a curve never mixes schedules. Epochs that not every run of a variant reached are left
out of its means. Results: bench/measurements/finetune_curves.json.

    python bench/finetune_curves.py --variant encoder=RUN_S0,RUN_S1 --variant adapted=RUN_S0,RUN_S1 \
        [--command NAME="the command that made them"] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchlib import interval, meta, write_result  # bench/ is on the path when a bench script runs

RESULTS = Path(__file__).parent / "measurements" / "finetune_curves.json"


def read_run(run: Path) -> dict:
    """A run's init, settings and dev curve, from its log.jsonl."""
    events = [json.loads(line) for line in (run / "log.jsonl").read_text("utf-8").splitlines() if line.strip()]
    start = next(e for e in events if e.get("event") == "finetune")
    stage = next(e for e in events if e.get("event") == "stage_start")
    curve = [{"epoch": round(e["step"] / stage["steps_per_epoch"]), "step": e["step"], "score": e["score"],
              "metric": e["metric"], "ece": e.get("ece")} for e in events if e.get("event") == "dev"]
    return {"run": str(run), "init": start["init"], "train_rows": start["train_rows"], "dev_rows": start["dev_rows"],
            "start_state_similarity": start.get("start_state_similarity"), "total_steps": stage["total_steps"],
            "steps_per_epoch": stage["steps_per_epoch"], "settings": stage["train"], "curve": curve}


def variant_of(runs: list[dict]) -> dict:
    """The runs of one variant: settings checked equal (seed aside), the mean per epoch all of them reached."""
    def without_seed(run: dict) -> dict:
        return {k: v for k, v in run["settings"].items() if k != "seed"} | {
            "init": run["init"], "train_rows": run["train_rows"], "dev_rows": run["dev_rows"]}

    if any(without_seed(r) != without_seed(runs[0]) for r in runs):
        raise SystemExit("runs of one variant differ in more than the seed: " + ", ".join(r["run"] for r in runs))
    reached = min(len(r["curve"]) for r in runs)
    epochs = []
    for i in range(reached):
        scores = [r["curve"][i]["score"] for r in runs]
        mean, half = interval(scores)
        epochs.append({"epoch": runs[0]["curve"][i]["epoch"], "step": runs[0]["curve"][i]["step"],
                       "scores": scores, "mean": mean, "interval": half})
    return {"settings": without_seed(runs[0]), "seeds": [r["settings"]["seed"] for r in runs], "runs": runs,
            "epochs": epochs}


def paired(variant: dict, reference: dict) -> list[dict]:
    """Per epoch both reached, variant minus reference, paired by seed (the seeds both have, in the
    reference's order)."""
    seeds = [s for s in reference["seeds"] if s in variant["seeds"]]
    out = []
    for mine, theirs in zip(variant["epochs"], reference["epochs"], strict=False):
        differences = [mine["scores"][variant["seeds"].index(s)] - theirs["scores"][reference["seeds"].index(s)]
                       for s in seeds]
        mean, half = interval(differences)
        out.append({"epoch": mine["epoch"], "differences": differences, "mean": mean, "interval": half,
                    "seeds": seeds})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", required=True, help="NAME=RUN_DIR[,RUN_DIR...]")
    parser.add_argument("--command", action="append", default=[],
                        help="NAME=the command that made that variant's runs (recorded as given)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()
    variants = {}
    for spec in args.variant:
        name, _, dirs = spec.partition("=")
        variants[name] = variant_of([read_run(Path(d)) for d in dirs.split(",") if d])
    commands = dict(c.partition("=")[::2] for c in args.command)
    reference = next(iter(variants))
    result = {"variants": variants, "commands": commands, "reference": reference,
              "against_reference": {name: paired(v, variants[reference]) for name, v in variants.items()
                                    if name != reference},
              "meta": meta("finetune_curves", started, load_before)}
    write_result(args.out, result)
    for name, variant in variants.items():
        print(name + ": " + ", ".join(f"epoch {e['epoch']} {e['mean']:.4f} ± {e['interval']:.4f}"
                                      for e in variant["epochs"]))
    for name, rows in result["against_reference"].items():
        print(f"{name} - {reference}: " + ", ".join(f"epoch {r['epoch']} {r['mean']:+.4f} ± {r['interval']:.4f}"
                                                 for r in rows))


if __name__ == "__main__":
    main()

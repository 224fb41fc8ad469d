"""How long a young MLM says the same thing at every position: state similarity and masked accuracy by steps.

For each `--steps N`, `zhkd pretrain` runs N steps on the texts the `small` demo sampled (2,000 train rows
of each corpus) with the settings the demo used when it pre-trained its own MLM (`small` shape, blocks of
128, seed 0), and scores the demo's dev texts (400 of each corpus): the top layer's state similarity
(`zhkd.distill.pretrain.state_similarity`: the mean cosine between the states of two characters, near 1
when the model's output hardly depends on its input) and the masked accuracy with fixed masks. A random
model of the shape over the same vocabulary, and the embedded encoder, are scored on the same texts.
Results: bench/measurements/collapse.json (one record per call, merged).

    python bench/collapse_bench.py --steps 60,200
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

RESULTS = Path(__file__).parent / "measurements" / "collapse.json"


def scores(model, tokenizer, texts: list[str]) -> dict:
    from zhkd.distill.pretrain import heldout_accuracy, state_similarity

    return {"state_similarity": state_similarity(model, tokenizer, texts),
            "masked_accuracy": heldout_accuracy(model, tokenizer, texts)["accuracy"]}


def main() -> None:
    import torch

    from zhkd.cli import main as zhkd
    from zhkd.demo import sample_texts
    from zhkd.distill.students import build_model, get_shape
    from zhkd.models import embedded_encoder, load_model, load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="60,200", help="comma-separated MLM step counts")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = sample_texts("dev", 400)
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
              "load_average_before": os.getloadavg(), "dev_texts": len(dev), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        train.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                                 for t in sample_texts("train", 2000)), encoding="utf-8")
        for steps in [int(s) for s in args.steps.split(",")]:
            out = Path(tmp) / f"mlm-{steps}"
            assert zhkd(["pretrain", "--input", str(train), "--output", str(out), "--shape", "small",
                         "--max-steps", str(steps), "--max-length", "128", "--seed", "0", "--save-every", "0"]) == 0
            model, tokenizer = load_model("mlm", out), load_tokenizer(out)
            record["rows"].append({"start": f"zhkd pretrain, {steps} steps", "steps": steps,
                                   **scores(model, tokenizer, dev)})
            if steps == min(int(s) for s in args.steps.split(",")):
                random = build_model(get_shape("small"), kind="mlm", vocab_size=len(tokenizer), labels=None,
                                     pad_token_id=tokenizer.pad_token_id, seed=0)
                record["rows"].append({"start": "random weights", "steps": 0, **scores(random, tokenizer, dev)})
        encoder = embedded_encoder()
        record["rows"].append({"start": "the embedded encoder", "steps": json.loads(
            (encoder / "summary.json").read_text("utf-8"))["steps"], **scores(load_model("mlm", encoder),
                                                                              load_tokenizer(encoder), dev)})
    record["load_average_after"] = os.getloadavg()
    results = json.loads(RESULTS.read_text("utf-8")) if RESULTS.exists() else {}
    results[args.steps] = record
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for row in record["rows"]:
        print(f"{row['start']:>32}: state similarity {row['state_similarity']:.3f}, "
              f"masked accuracy {row['masked_accuracy']:.4f}")


if __name__ == "__main__":
    main()

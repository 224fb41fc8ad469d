"""The classical baseline a practitioner tries first, trained on the same rows as the teacher.

A teacher is worth distilling only when it beats what a user gets in seconds on a CPU: TF-IDF of
character 1–3-grams with logistic regression for one label per text or pair, and a linear-chain CRF on
a ±2 token window (characters, for Chinese NER) for tags. The model is chosen by the task's label kind,
never by its name; each kind's model is one entry in `BASELINES` (`register_baseline` adds one). Its
regularisation is picked on the dev rows when they are given, from a small grid as a practitioner's
would be, and it is refitted on nothing else: the train rows are the teacher's. It is saved without
pickle (safetensors and a JSON vocabulary for logistic regression, crfsuite's own model file for the
CRF), so its size is that of files a user could ship, and its parameters are the non-zero weights.
scikit-learn and sklearn-crfsuite come with the `baseline` extra and are imported only here, lazily.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zhkd.distill.errors import DistillError
from zhkd.distill.metrics import task_scores
from zhkd.tasks import SEQUENCE, TOKEN, get_task


class BaselineUnavailable(DistillError):
    """The task's label kind has no classical baseline (the message is one line saying so)."""


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DistillError(f"the classical baseline needs {module.split('.')[0]}: pip install 'zhkd[baseline]'") \
            from None


class Baseline:
    """One classical model for a label kind. Subclasses fit once per setting of `grid`, on features
    computed once (`featurise`), and predict label ids as the transformer models do."""

    kind = ""  # short name in the report
    description = ""
    grid: tuple[dict, ...] = ()  # settings tried on the dev rows, in order (the first wins a tie)
    default: dict = {}  # the setting used when no dev rows are given
    modules: tuple[str, ...] = ()  # imported before the training clock starts

    def __init__(self, task: str, label_names: Sequence[str]) -> None:
        self.task = task
        self.label_names = list(label_names)
        self.settings: dict = {}

    def prepare(self, train_rows: Sequence[dict]) -> None:
        """Learn what every setting shares (a vocabulary); nothing that depends on labels."""

    def featurise(self, rows: Sequence[dict]):
        raise NotImplementedError

    def fit(self, features, rows: Sequence[dict], settings: dict) -> object:
        """A fitted estimator for `settings` (the instance keeps the chosen one in `estimator`)."""
        raise NotImplementedError

    def predict_features(self, estimator, features) -> list:
        raise NotImplementedError

    def predict(self, rows: Sequence[dict]) -> list:
        """Label ids of raw rows: what one timed call does, featurisation included."""
        return self.predict_features(self.estimator, self.featurise(rows))

    def save(self, out_dir: Path) -> list[Path]:
        raise NotImplementedError

    def parameters(self) -> int:
        raise NotImplementedError


BASELINES: dict[str, type[Baseline]] = {}


def register_baseline(label_kind: str) -> Callable[[type[Baseline]], type[Baseline]]:
    """The hook: the classical model of a label kind (one per kind; a later one replaces it)."""
    def add(cls: type[Baseline]) -> type[Baseline]:
        BASELINES[label_kind] = cls
        return cls
    return add


def baseline_class(task: str) -> type[Baseline]:
    spec = get_task(task)
    if spec.label_kind not in BASELINES:
        raise BaselineUnavailable(f"no classical baseline for task {task} (label kind {spec.label_kind}); "
                                  f"evaluating without one")
    return BASELINES[spec.label_kind]


# --- one label per text or pair ----------------------------------------------------------------------------


@register_baseline(SEQUENCE)
class TfidfLogisticRegression(Baseline):
    """TF-IDF of character 1–3-grams, logistic regression. A pair is both texts' features side by side
    and their element-wise product (the n-grams they share), from one vocabulary."""

    kind = "tfidf-logreg"
    description = "TF-IDF of character 1-3-grams + logistic regression"
    grid = ({"C": 1.0}, {"C": 4.0}, {"C": 16.0}, {"C": 64.0})
    default = {"C": 4.0}
    modules = ("sklearn.feature_extraction.text", "sklearn.linear_model", "scipy.sparse")
    ngram_range = (1, 3)

    def prepare(self, train_rows):
        text = _require("sklearn.feature_extraction.text")
        import numpy as np

        self.pair = get_task(self.task).has_pair
        self.vectorizer = text.TfidfVectorizer(analyzer="char", ngram_range=self.ngram_range, sublinear_tf=True,
                                               lowercase=False, dtype=np.float32)
        texts = [r["text"] for r in train_rows]
        self.vectorizer.fit(texts + [r["text_pair"] for r in train_rows] if self.pair else texts)

    def featurise(self, rows):
        first = self.vectorizer.transform([r["text"] for r in rows])
        if not self.pair:
            return first
        import scipy.sparse

        second = self.vectorizer.transform([r["text_pair"] for r in rows])
        return scipy.sparse.hstack([first, second, first.multiply(second)], format="csr")

    def fit(self, features, rows, settings):
        linear = _require("sklearn.linear_model")
        return linear.LogisticRegression(C=settings["C"], max_iter=2000).fit(features, [r["label"] for r in rows])

    def predict_features(self, estimator, features):
        return [int(p) for p in estimator.predict(features)]

    def save(self, out_dir):
        from safetensors.numpy import save_file

        weights = out_dir / "model.safetensors"
        save_file({"coef": self.estimator.coef_, "intercept": self.estimator.intercept_,
                   "idf": self.vectorizer.idf_, "classes": self.estimator.classes_}, str(weights))
        vocab = sorted(self.vectorizer.vocabulary_, key=self.vectorizer.vocabulary_.get)
        (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        return [weights, out_dir / "vocab.json"]

    def parameters(self):
        import numpy as np

        return int(np.count_nonzero(self.estimator.coef_) + np.count_nonzero(self.estimator.intercept_))


# --- one tag per token -------------------------------------------------------------------------------------


def window_features(tokens: Sequence[str], width: int = 2) -> list[dict[str, str]]:
    """Per token: a bias, the tokens within ±`width` and the adjacent pairs among them (`^`/`$` past
    either end), as crfsuite attributes."""
    padded = ["^"] * width + list(tokens) + ["$"] * width
    out = []
    for i in range(width, width + len(tokens)):
        feats = {"bias": "1"}
        for d in range(-width, width + 1):
            feats[f"c{d:+d}"] = padded[i + d]
        for d in range(-width, width):
            feats[f"c{d:+d}{d + 1:+d}"] = padded[i + d] + padded[i + d + 1]
        out.append(feats)
    return out


@register_baseline(TOKEN)
class CharWindowCRF(Baseline):
    """A linear-chain CRF (crfsuite, L-BFGS, elastic net) on ±2-token window features."""

    kind = "crf"
    description = "linear-chain CRF on a ±2 character window (unigrams and bigrams)"
    grid = ({"c1": 0.1, "c2": 0.01}, {"c1": 0.3, "c2": 0.01})
    default = {"c1": 0.1, "c2": 0.01}
    modules = ("sklearn_crfsuite",)
    max_iterations = 100

    def featurise(self, rows):
        return [window_features(r["tokens"]) for r in rows]

    def fit(self, features, rows, settings):
        crfsuite = _require("sklearn_crfsuite")
        crf = crfsuite.CRF(algorithm="lbfgs", c1=settings["c1"], c2=settings["c2"],
                           max_iterations=self.max_iterations, all_possible_transitions=True)
        return crf.fit(features, [[self.label_names[t] for t in r["tags"]] for r in rows])

    def predict_features(self, estimator, features):
        index = {name: i for i, name in enumerate(self.label_names)}
        return [[index[t] for t in estimator.predict_single(f)] for f in features]

    def save(self, out_dir):
        path = out_dir / "model.crfsuite"
        shutil.copyfile(self.estimator.modelfile.name, path)  # crfsuite's own binary format, no pickle
        return [path]

    def parameters(self):
        info = self.estimator.tagger_.info()  # crfsuite's dump of the model file
        return sum(w != 0 for w in info.state_features.values()) + sum(w != 0 for w in info.transitions.values())


# --- training ----------------------------------------------------------------------------------------------


@dataclass
class TrainedBaseline:
    model: Baseline
    settings: dict
    trials: list[dict]  # every setting tried, with its dev score
    train_rows: int
    train_seconds: float  # featurisation, the grid and the fits: what a user waits for
    files: list[Path] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def record(self) -> dict:
        """What the evaluation report keeps about how the baseline was made."""
        return {"kind": self.model.kind, "description": self.model.description, "settings": self.settings,
                "tuning": self.trials, "train_rows": self.train_rows, "train_seconds": round(self.train_seconds, 2),
                "files": [f.name for f in self.files]}


def train_baseline(task: str, train_rows: Sequence[dict], label_names: Sequence[str], out_dir: str | Path, *,
                   dev_rows: Sequence[dict] | None = None) -> TrainedBaseline:
    """Fit the task's classical model on `train_rows` (label ids into `label_names`), its setting chosen
    by the headline metric on `dev_rows` when given (else its default), and save it to `out_dir`."""
    cls = baseline_class(task)
    if not train_rows:
        raise DistillError("the baseline's train rows are empty")
    label_key = get_task(task).label_field
    if any(r.get(label_key) is None for r in train_rows):
        raise DistillError("every train row of the baseline needs a gold label")
    for module in cls.modules:
        _require(module)
    started = time.perf_counter()
    model = cls(task, label_names)
    model.prepare(train_rows)
    features = model.featurise(train_rows)
    dev_features = model.featurise(dev_rows) if dev_rows else None
    headline = get_task(task).headline
    trials, best, best_score = [], None, None
    for settings in cls.grid if dev_rows else (cls.default,):
        estimator = model.fit(features, train_rows, settings)
        score = None
        if dev_rows:
            score = task_scores(task, dev_rows, model.predict_features(estimator, dev_features),
                                label_names)[headline]
        trials.append({"settings": settings, f"dev_{headline}": score})
        if best is None or (score is not None and score > best_score):
            best, best_score, model.settings = estimator, score, settings
    model.estimator = best
    seconds = time.perf_counter() - started
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = model.save(out_dir)
    config = {"kind": model.kind, "description": model.description, "task": task, "label_names": model.label_names,
              "settings": model.settings}
    (out_dir / "baseline.json").write_text(json.dumps(config, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return TrainedBaseline(model, model.settings, trials, len(train_rows), seconds, files)

"""The catalogue of model shapes: students, and the BERT-base reference they are measured against."""

from __future__ import annotations

from dataclasses import dataclass

from zhkd.distill.errors import DistillError


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    max_positions: int = 512
    student: bool = True  # False for the reference, which selection never picks


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("bert-base", 12, 768, 12, 3072, student=False),
        Shape("rbt6", 6, 768, 12, 3072),
        Shape("rbt4", 4, 768, 12, 3072),
        Shape("rbt3", 3, 768, 12, 3072),
        Shape("tinybert6", 6, 768, 12, 3072),
        Shape("tinybert4", 4, 312, 12, 1200),
        Shape("rbt4-h312", 4, 312, 12, 1248),
        Shape("small", 4, 256, 4, 1024),
        Shape("mini", 2, 128, 2, 512),
        # One layer of mini's width: at batch 1 on a 2-core CPU the only catalogue shape about 7x faster
        # than `small`; its heads have small's head size, so it is sub-cloned from a `small` teacher.
        Shape("micro", 1, 128, 2, 512),
    )
}


def get_shape(name: str) -> Shape:
    try:
        return SHAPES[name]
    except KeyError:
        raise DistillError(f"unknown shape {name!r}; the catalogue has {', '.join(SHAPES)}") from None


def build_model(shape: Shape | str, *, kind: str, vocab_size: int, num_labels: int | None = None,
                labels: list[str] | None = None, pad_token_id: int = 0, seed: int = 0,
                problem_type: str | None = None):
    """A randomly initialised BERT of a catalogue shape ("sequence", "token" or "mlm" head); `problem_type`
    is the task's (`TaskSpec.problem_type`: a multi-label head says so in its config)."""
    import torch
    import transformers

    shape = get_shape(shape) if isinstance(shape, str) else shape
    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
        max_position_embeddings=shape.max_positions, pad_token_id=pad_token_id, problem_type=problem_type,
    )
    if labels is not None:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    elif num_labels is not None:
        config.num_labels = num_labels
    model_class = {
        "sequence": transformers.BertForSequenceClassification,
        "token": transformers.BertForTokenClassification,
        "mlm": transformers.BertForMaskedLM,
    }
    if kind not in model_class:
        raise DistillError(f"unknown model kind {kind!r}; one of {', '.join(model_class)}")
    # Weight init draws from torch's global RNG; fork it so building a model never disturbs the caller's.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class[kind](config)


LAYER_MAPPINGS = ("uniform", "bottom", "top")


def student_names() -> list[str]:
    """The shapes selection may pick (the reference shape is not one), in catalogue order."""
    return [s.name for s in SHAPES.values() if s.student]


def mapped_layers(teacher_layers: int, student_layers: int, mapping: str) -> list[int]:
    """Which teacher layer initialises each student layer.

    uniform: every k-th layer ending at the top (12 -> 3 gives 3, 7, 11, 0-based); bottom: the first
    layers; top: the last.
    """
    if mapping not in LAYER_MAPPINGS:
        raise DistillError(f"unknown layer mapping {mapping!r}; one of {', '.join(LAYER_MAPPINGS)}")
    if student_layers > teacher_layers:
        raise DistillError(f"a {student_layers}-layer student cannot take layers from a {teacher_layers}-layer teacher")
    if mapping == "bottom":
        return list(range(student_layers))
    if mapping == "top":
        return list(range(teacher_layers - student_layers, teacher_layers))
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def _copy_matching(target, source) -> list[str]:
    """Copy every tensor whose name and shape agree; return the names copied."""
    import torch

    theirs = source.state_dict()
    copied = []
    with torch.no_grad():
        for name, tensor in target.state_dict().items():
            if name in theirs and theirs[name].shape == tensor.shape:
                tensor.copy_(theirs[name])
                copied.append(name)
    return copied


def init_from_teacher(student, teacher, *, mapping: str = "uniform") -> dict:
    """Start a student from its teacher where the widths allow it; leave the rest as initialised.

    Same hidden size: embeddings (word, position, type, LayerNorm) are copied tensor by tensor where
    shapes agree (so a shared tokenizer copies all of them); encoder layers follow `mapping` when the
    intermediate and head sizes also match; the pooler and classifier are copied when they fit.
    A narrower student with the teacher's head size (e.g. 2 x 128 with 2 heads from 4 x 256 with 4)
    is *sub-cloned* (`subclone`): the teacher's most important hidden dimensions, heads and
    feed-forward neurons are cut out of the mapped layers. Otherwise the student stays random.
    Returns what was done, for the training log.
    """
    s_config, t_config = student.config, teacher.config
    if s_config.hidden_size != t_config.hidden_size:
        if can_subclone(s_config, t_config):
            return subclone(student, teacher, mapping=mapping)
        return {"mapping": mapping, "embeddings": [], "layers": {}, "head": [],
                "reason": f"hidden {s_config.hidden_size} != teacher's {t_config.hidden_size} and the head sizes "
                          "or widths do not allow sub-cloning: random init"}
    s_base, t_base = student.base_model, teacher.base_model
    report: dict = {"mapping": mapping, "method": "copy", "embeddings": [], "layers": {}, "head": []}
    report["embeddings"] = _copy_matching(s_base.embeddings, t_base.embeddings)
    same_layers = (s_config.intermediate_size == t_config.intermediate_size
                   and s_config.num_attention_heads == t_config.num_attention_heads)
    if same_layers:
        chosen = mapped_layers(t_config.num_hidden_layers, s_config.num_hidden_layers, mapping)
        for i, j in enumerate(chosen):
            s_base.encoder.layer[i].load_state_dict(t_base.encoder.layer[j].state_dict())
            report["layers"][i] = j
    else:
        report["reason"] = "layer widths differ from the teacher's: encoder layers left random"
    if getattr(s_base, "pooler", None) is not None and getattr(t_base, "pooler", None) is not None:
        report["head"] += [f"pooler.{n}" for n in _copy_matching(s_base.pooler, t_base.pooler)]
    if hasattr(student, "classifier") and hasattr(teacher, "classifier"):
        report["head"] += [f"classifier.{n}" for n in _copy_matching(student.classifier, teacher.classifier)]
    return report


def _head_size(config) -> int:
    return config.hidden_size // config.num_attention_heads


def can_subclone(s_config, t_config) -> bool:
    """A narrower student whose heads have the teacher's size, no wider anywhere, and no deeper."""
    return (_head_size(s_config) == _head_size(t_config)
            and s_config.hidden_size <= t_config.hidden_size
            and s_config.intermediate_size <= t_config.intermediate_size
            and s_config.num_attention_heads <= t_config.num_attention_heads
            and s_config.num_hidden_layers <= t_config.num_hidden_layers
            and s_config.vocab_size == t_config.vocab_size
            and s_config.max_position_embeddings <= t_config.max_position_embeddings)


def _top(scores, k: int) -> list[int]:
    """Indices of the k largest scores, in ascending index order (ties to the lower index)."""
    import torch

    order = torch.argsort(-scores, stable=True)[:k]
    return sorted(order.tolist())


def subclone(student, teacher, *, mapping: str = "uniform") -> dict:
    """Cut a narrower student out of its teacher (after Samragh et al. 2023, "weight subcloning").

    Importance, from the weights alone (so every student of a run starts alike, whatever data it sees):
    a hidden dimension by the summed |gain| + |bias| of every LayerNorm (each LayerNorm sets how much
    that dimension carries in the residual stream); a head of a mapped layer by the norm of its slice
    of the attention output projection; a feed-forward neuron by ||W_in row|| x ||W_out column||.
    The kept rows and columns are copied, and every weight whose input shrank is scaled by
    sqrt(teacher's inputs / student's) so its outputs keep their teacher-sized variance.
    """
    import math

    import torch

    s_config, t_config = student.config, teacher.config
    s_base, t_base = student.base_model, teacher.base_model
    head = _head_size(t_config)
    norms = [m for name, m in t_base.named_modules() if name.endswith("LayerNorm")]
    importance = sum(m.weight.detach().abs() + m.bias.detach().abs() for m in norms)
    dims = torch.tensor(_top(importance, s_config.hidden_size))
    hidden_scale = math.sqrt(t_config.hidden_size / s_config.hidden_size)
    report: dict = {"mapping": mapping, "method": "subclone", "hidden_dims": dims.tolist(), "embeddings": [],
                    "layers": {}, "heads": {}, "neurons_kept": s_config.intermediate_size, "head": []}

    def put(target, value) -> None:
        target.copy_(value.to(target.dtype))

    with torch.no_grad():
        s_emb, t_emb = s_base.embeddings, t_base.embeddings
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            s_table, t_table = getattr(s_emb, name).weight, getattr(t_emb, name).weight
            if s_table.shape[0] <= t_table.shape[0]:
                put(s_table, t_table[: s_table.shape[0]][:, dims])
                report["embeddings"].append(f"{name}.weight")
        put(s_emb.LayerNorm.weight, t_emb.LayerNorm.weight[dims])
        put(s_emb.LayerNorm.bias, t_emb.LayerNorm.bias[dims])
        report["embeddings"] += ["LayerNorm.weight", "LayerNorm.bias"]

        chosen = mapped_layers(t_config.num_hidden_layers, s_config.num_hidden_layers, mapping)
        for i, j in enumerate(chosen):
            s_layer, t_layer = s_base.encoder.layer[i], t_base.encoder.layer[j]
            t_out = t_layer.attention.output.dense.weight  # (hidden, heads * head)
            head_norms = torch.stack([t_out[:, h * head : (h + 1) * head].norm() for h in
                                      range(t_config.num_attention_heads)])
            heads = _top(head_norms, s_config.num_attention_heads)
            rows = torch.tensor([h * head + k for h in heads for k in range(head)])
            for name in ("query", "key", "value"):
                s_lin, t_lin = getattr(s_layer.attention.self, name), getattr(t_layer.attention.self, name)
                put(s_lin.weight, t_lin.weight[rows][:, dims] * hidden_scale)
                put(s_lin.bias, t_lin.bias[rows])
            head_scale = math.sqrt(t_config.num_attention_heads / s_config.num_attention_heads)
            put(s_layer.attention.output.dense.weight, t_out[dims][:, rows] * head_scale)
            put(s_layer.attention.output.dense.bias, t_layer.attention.output.dense.bias[dims])
            put(s_layer.attention.output.LayerNorm.weight, t_layer.attention.output.LayerNorm.weight[dims])
            put(s_layer.attention.output.LayerNorm.bias, t_layer.attention.output.LayerNorm.bias[dims])
            t_in, t_back = t_layer.intermediate.dense.weight, t_layer.output.dense.weight  # (I, H), (H, I)
            neurons = torch.tensor(_top(t_in.norm(dim=1) * t_back.norm(dim=0), s_config.intermediate_size))
            put(s_layer.intermediate.dense.weight, t_in[neurons][:, dims] * hidden_scale)
            put(s_layer.intermediate.dense.bias, t_layer.intermediate.dense.bias[neurons])
            neuron_scale = math.sqrt(t_config.intermediate_size / s_config.intermediate_size)
            put(s_layer.output.dense.weight, t_back[dims][:, neurons] * neuron_scale)
            put(s_layer.output.dense.bias, t_layer.output.dense.bias[dims])
            put(s_layer.output.LayerNorm.weight, t_layer.output.LayerNorm.weight[dims])
            put(s_layer.output.LayerNorm.bias, t_layer.output.LayerNorm.bias[dims])
            report["layers"][i] = j
            report["heads"][i] = heads

        if getattr(s_base, "pooler", None) is not None and getattr(t_base, "pooler", None) is not None:
            put(s_base.pooler.dense.weight, t_base.pooler.dense.weight[dims][:, dims] * hidden_scale)
            put(s_base.pooler.dense.bias, t_base.pooler.dense.bias[dims])
            report["head"] += ["pooler.dense.weight", "pooler.dense.bias"]
        s_cls, t_cls = getattr(student, "classifier", None), getattr(teacher, "classifier", None)
        if s_cls is not None and t_cls is not None and s_cls.weight.shape[0] == t_cls.weight.shape[0]:
            put(s_cls.weight, t_cls.weight[:, dims] * hidden_scale)
            put(s_cls.bias, t_cls.bias)
            report["head"] += ["classifier.weight", "classifier.bias"]
    return report


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""A padding-free teacher forward for BERT-family classifiers on CPU: the same float32 arithmetic, less of it.

A batch padded to its longest row spends matrix products on pad tokens, and `pipeline()` at batch
size 1, which pads nothing, multiplies every weight matrix by one row's few dozen tokens, so the
weights stream through the caches once per row. Here a batch's real tokens are gathered into one
`[tokens, hidden]` matrix: the attention projections (one product: query, key and value weights side
by side), the feed-forward pair, LayerNorm and the activation run on real tokens only, as a few large
products; attention runs per run of equal-length rows, with no mask and no pad keys. Everything else
is the model's own modules: the embeddings (on the padded batch, so each architecture's positions
hold), each layer's Linear, LayerNorm and activation modules, the pooler and the head. The logits
equal the plain forward's up to float32 rounding (the products are blocked differently; the tests hold
them within 1e-5), and, like the plain forward's, they are a function of the batch's rows alone.

It runs where `forward_path` says so: on CPU, for the classifiers in `HEADS` whose layers have BERT's
layout. Anything else (other architectures, a GPU, where padded batches are what the hardware wants)
runs the plain forward. `bench/label_bench.py` measures the two against `pipeline()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

FORWARDS = ("packed", "plain")

# Classifier class name -> (attribute of its encoder, head: (model, padded sequence output) -> logits).
# The heads are the models' own forward after the encoder, dropout included (a no-op in eval mode).
HEADS: dict[str, tuple[str, Callable]] = {}


def register_head(class_name: str, encoder: str, head: Callable) -> None:
    """Lets the packed forward run a classifier class whose encoder layers have BERT's layout."""
    HEADS[class_name] = (encoder, head)


register_head("BertForSequenceClassification", "bert",
              lambda m, seq: m.classifier(m.dropout(m.bert.pooler(seq))))
register_head("BertForTokenClassification", "bert", lambda m, seq: m.classifier(m.dropout(seq)))
register_head("RobertaForSequenceClassification", "roberta", lambda m, seq: m.classifier(seq))
register_head("RobertaForTokenClassification", "roberta", lambda m, seq: m.classifier(m.dropout(seq)))

# The layer layout the packed forward reproduces (transformers' BERT and RoBERTa layers).
_LAYERS = {"BertLayer": "BertSelfAttention", "RobertaLayer": "RobertaSelfAttention"}


def unsupported(model) -> str | None:
    """Why the packed forward cannot run this model, or None when it can."""
    name = type(model).__name__
    if name not in HEADS:
        return f"{name} is not one of the packed forward's classifiers ({', '.join(sorted(HEADS))})"
    config = model.config
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return f"{name} is configured as a decoder"
    encoder = getattr(model, HEADS[name][0])
    for layer in encoder.encoder.layer:
        attention = type(layer.attention.self).__name__
        if _LAYERS.get(type(layer).__name__) != attention:
            return f"{name} has a {type(layer).__name__} layer with {attention}, not BERT's layout"
    return None


def forward_path(model, device: str) -> str:
    """`packed` on CPU for a supported classifier, else `plain`."""
    return "packed" if device == "cpu" and unsupported(model) is None else "plain"


class PackedForward:
    """The packed forward of one loaded classifier (eval mode, float32, CPU). Each layer's query, key and
    value weights are stored side by side in one tensor, the three Linear modules keeping views of its
    rows: one product gives all three, and the plain forward, which reads the views, is unchanged in
    values and memory."""

    def __init__(self, model) -> None:
        import torch

        reason = unsupported(model)
        if reason:
            raise ValueError(reason)
        self.model = model
        encoder_name, self.head = HEADS[type(model).__name__]
        self.base = getattr(model, encoder_name)
        self.projections = []
        with torch.no_grad():
            for layer in self.base.encoder.layer:
                parts = (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value)
                fused = []
                for name in ("weight", "bias"):
                    tensor = torch.cat([getattr(p, name).detach() for p in parts]).contiguous()
                    for part, view in zip(parts, tensor.split([getattr(p, name).shape[0] for p in parts]),
                                          strict=True):
                        getattr(part, name).data = view
                    fused.append(tensor)
                self.projections.append(tuple(fused))

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        """Logits of a right-padded batch, `[rows, labels]` or `[rows, width, labels]` like the plain
        forward's (per-token logits at pad positions are the head's output for a zero vector). Call in
        `torch.inference_mode()`."""
        hidden = self.base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = attention_mask.bool()
        x = hidden[mask]  # [tokens, hidden], row after row
        runs = equal_length_runs(attention_mask.sum(dim=1).tolist())
        for layer, projection in zip(self.base.encoder.layer, self.projections, strict=True):
            x = _packed_layer(layer, projection, x, runs)
        sequence = hidden.new_zeros(hidden.shape)
        sequence[mask] = x
        return self.head(self.model, sequence)


def equal_length_runs(lengths: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first token, rows, length) of each run of consecutive equal-length rows (the batches come
    sorted by length, so there are few runs)."""
    runs, start, i = [], 0, 0
    while i < len(lengths):
        j = i
        while j < len(lengths) and lengths[j] == lengths[i]:
            j += 1
        runs.append((start, j - i, lengths[i]))
        start += (j - i) * lengths[i]
        i = j
    return runs


def _packed_layer(layer, projection, x, runs):
    """One encoder layer on packed tokens: BertLayer's arithmetic with attention per equal-length run."""
    import torch
    import torch.nn.functional as F

    attention = layer.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size
    width = heads * size
    qkv = F.linear(x, *projection)
    context = []
    for first, rows, length in runs:
        block = qkv[first: first + rows * length].view(rows, length, 3, heads, size).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(block[0], block[1], block[2], scale=attention.scaling)
        context.append(out.transpose(1, 2).reshape(rows * length, width))
    context = torch.cat(context) if len(context) > 1 else context[0]
    output = layer.attention.output
    x = output.LayerNorm(output.dense(context) + x)
    return layer.output.LayerNorm(layer.output.dense(layer.intermediate(x)) + x)

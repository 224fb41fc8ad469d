"""A padding-free teacher forward for BERT-family classifiers on CPU: the same float32 arithmetic, less of it.

A batch padded to its longest row spends matrix products on pad tokens, and `pipeline()` at batch
size 1, which pads nothing, multiplies every weight matrix by one row's few dozen tokens, so the
weights stream through the caches once per row. Here a batch's real tokens are gathered into one
`[tokens, hidden]` matrix: the attention projections (one product: query, key and value weights side
by side), the feed-forward pair, LayerNorm and the activation run on real tokens only, as a few large
products; attention runs per run of equal-length rows, with no mask and no pad keys (at several torch
threads, as one masked call over the padded batch: many small calls each pay the threads' start and
join; attention is a few percent of the arithmetic, its padding with it). A sequence
classifier's head reads each row's first token only, so the last layer runs for those tokens alone
(keys and values of every token, the rest for the first). Where torch has oneDNN on x86, the products
run through it, GELU and the residual adds fused into them (`OneDnnProducts`); else through torch's
own linear (`TorchProducts`). Everything else is the model's own modules: the embeddings (on the
padded batch, so each architecture's positions hold), LayerNorm, the pooler and the head. The logits
equal the plain forward's up to float32 rounding (the products are blocked differently; the tests hold
them within 1e-5), and, like the plain forward's, they are a function of the batch's rows alone.

It runs where `forward_path` says so: on CPU, for the classifiers in `HEADS` whose layers have BERT's
layout. Anything else (other architectures, a GPU, where padded batches are what the hardware wants)
runs the plain forward. `bench/label_bench.py` measures it against `pipeline()` and the plain forward,
`bench/forward_bench.py` against the alternatives tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Head:
    """How a classifier class sits on its encoder: the encoder's attribute, the head as the model's own
    forward runs it after the encoder (dropout included, a no-op in eval mode) on a `[rows, width,
    hidden]` sequence output, and whether the head reads the first token of each row only (a sequence
    classifier's pooler), in which case the last layer is run for those tokens alone: the other
    tokens' outputs of that layer are never read."""

    encoder: str
    apply: Callable
    first_token_only: bool


# Classifier class name -> its Head.
HEADS: dict[str, Head] = {}


def register_head(class_name: str, head: Head) -> None:
    """Lets the packed forward run a classifier class whose encoder layers have BERT's layout."""
    HEADS[class_name] = head


register_head("BertForSequenceClassification",
              Head("bert", lambda m, seq: m.classifier(m.dropout(m.bert.pooler(seq))), first_token_only=True))
register_head("BertForTokenClassification",
              Head("bert", lambda m, seq: m.classifier(m.dropout(seq)), first_token_only=False))
register_head("RobertaForSequenceClassification",
              Head("roberta", lambda m, seq: m.classifier(seq), first_token_only=True))
register_head("RobertaForTokenClassification",
              Head("roberta", lambda m, seq: m.classifier(m.dropout(seq)), first_token_only=False))

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
    encoder = getattr(model, HEADS[name].encoder)
    for layer in encoder.encoder.layer:
        attention = type(layer.attention.self).__name__
        if _LAYERS.get(type(layer).__name__) != attention:
            return f"{name} has a {type(layer).__name__} layer with {attention}, not BERT's layout"
    return None


def forward_path(model, device: str) -> str:
    """`packed` on CPU for a supported classifier, else `plain`."""
    return "packed" if device == "cpu" and unsupported(model) is None else "plain"


class TorchProducts:
    """The layers' matrix products through torch's own linear (MKL on x86), activation and adds apart."""

    name = "packed"

    @staticmethod
    def linear(x, weight, bias):
        import torch.nn.functional as F

        return F.linear(x, weight, bias)

    @staticmethod
    def linear_add(x, dense, residual):
        return dense(x) + residual

    @staticmethod
    def intermediate(module, x):
        return module(x)


class OneDnnProducts:
    """The layers' matrix products through oneDNN, with the residual add, and the exact (erf) GELU where
    the layer has it, applied inside the product rather than as passes of their own over the output
    (bench/forward_bench.py: faster than torch's linear with the passes apart). The entry point,
    `torch.ops.mkldnn._linear_pointwise`, is the one torch's own compiler emits for CPU linears; it is
    private, so `available()` looks for it and the packed forward uses TorchProducts without it."""

    name = "packed-onednn"

    @staticmethod
    def available() -> bool:
        import platform

        import torch

        return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
                and platform.machine().lower() in ("x86_64", "amd64"))

    @staticmethod
    def linear(x, weight, bias):
        import torch

        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def linear_add(x, dense, residual):
        import torch

        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, dense.weight, dense.bias, "add")

    @classmethod
    def intermediate(cls, module, x):
        import torch
        import torch.nn.functional as F

        act = module.intermediate_act_fn
        if type(act).__name__ == "GELUActivation" and getattr(act, "act", None) is F.gelu:
            return torch.ops.mkldnn._linear_pointwise(x, module.dense.weight, module.dense.bias, "gelu", [], "none")
        return act(cls.linear(x, module.dense.weight, module.dense.bias))


class PackedForward:
    """The packed forward of one loaded classifier (eval mode, float32, CPU). Each layer's query, key and
    value weights are stored side by side in one tensor, the three Linear modules keeping views of its
    rows, so one product gives all three as one tensor that each run of rows views as (q, k, v) and
    the last layer slices into (q) and (k, v); the plain forward, which reads the views, is unchanged
    in values and memory. (Speed is not the reason: bench/forward_bench.py finds three products as
    fast.) `onednn`: whether the products run through oneDNN (default: where it is
    available); `name` says which ran (`packed-onednn` or `packed`)."""

    def __init__(self, model, onednn: bool | None = None) -> None:
        import torch

        reason = unsupported(model)
        if reason:
            raise ValueError(reason)
        if onednn is None:
            onednn = OneDnnProducts.available()
        self.products = OneDnnProducts if onednn else TorchProducts
        self.name = self.products.name
        self.model, self.head = model, HEADS[type(model).__name__]
        self.base = getattr(model, self.head.encoder)
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

    def __call__(self, input_ids, attention_mask, token_type_ids=None, *, whole_batch_attention=None):
        """Logits of a right-padded batch, `[rows, labels]` or `[rows, width, labels]` like the plain
        forward's (per-token logits at pad positions are the head's output for a zero vector). Call in
        `torch.inference_mode()`. Attention runs per run of equal-length rows at one torch thread; at
        several, as one masked call over the padded batch (`whole_batch_attention`, default by the thread
        count): many small calls each pay the threads' start and join, which costs little on idle cores
        (bench/forward_bench.py --threads 1,2 finds the two alike there) but much where other work holds
        the cores and a thread waits at every join."""
        import torch

        hidden = self.base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = attention_mask.bool()
        x = hidden[mask]  # [tokens, hidden], row after row
        if whole_batch_attention is None:
            whole_batch_attention = torch.get_num_threads() > 1
        packing = Packing(equal_length_runs(attention_mask.sum(dim=1).tolist()), mask, whole_batch_attention)
        layers = list(zip(self.base.encoder.layer, self.projections, strict=True))
        if self.head.first_token_only:
            *layers, last = layers
        for layer, projection in layers:
            x = _packed_layer(layer, projection, x, packing, self.products)
        if self.head.first_token_only:
            return self.head.apply(self.model, _first_token_layer(*last, x, packing, self.products)[:, None, :])
        sequence = hidden.new_zeros(hidden.shape)
        sequence[mask] = x
        return self.head.apply(self.model, sequence)


@dataclass
class Packing:
    """Where a batch's tokens are: runs of equal-length rows in the packed order (`equal_length_runs`),
    the padded batch's mask, and whether attention runs over the padded batch in one call."""

    runs: list[tuple[int, int, int]]
    mask: object  # [rows, width] bool tensor
    whole_batch: bool

    def padded(self, packed):
        """A `[tokens, n]` packed tensor laid out as the padded batch `[rows, width, n]` (zeros at pads)."""
        out = packed.new_zeros((*self.mask.shape, packed.shape[-1]))
        out[self.mask] = packed
        return out

    def key_mask(self):
        return self.mask[:, None, None, :]


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


def _first_token_layer(layer, projection, x, packing, products):
    """The last layer for each row's first token alone, `[rows, hidden]`: keys and values of every token,
    the query, attention output and feed-forward of the first tokens only."""
    import torch
    import torch.nn.functional as F

    attention = layer.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size
    width = heads * size
    weight, bias = projection
    kv = products.linear(x, weight[width:], bias[width:])
    runs = packing.runs
    x = x[torch.tensor([first + i * length for first, rows, length in runs for i in range(rows)])]
    q = products.linear(x, weight[:width], bias[:width]).view(len(x), 1, heads, size).transpose(1, 2)
    if packing.whole_batch:
        k, v = packing.padded(kv).view(*packing.mask.shape, 2, heads, size).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=packing.key_mask(), scale=attention.scaling)
        return _after_attention(layer, context.reshape(len(x), width), x, products)
    context, row = [], 0
    for first, rows, length in runs:
        k, v = kv[first: first + rows * length].view(rows, length, 2, heads, size).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q[row: row + rows], k, v, scale=attention.scaling)
        context.append(out.reshape(rows, width))
        row += rows
    return _after_attention(layer, torch.cat(context) if len(context) > 1 else context[0], x, products)


def _packed_layer(layer, projection, x, packing, products):
    """One encoder layer on packed tokens: BertLayer's arithmetic with attention per equal-length run
    (or over the padded batch in one call)."""
    import torch
    import torch.nn.functional as F

    attention = layer.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size
    width = heads * size
    qkv = products.linear(x, *projection)
    if packing.whole_batch:
        q, k, v = packing.padded(qkv).view(*packing.mask.shape, 3, heads, size).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=packing.key_mask(), scale=attention.scaling)
        return _after_attention(layer, out.transpose(1, 2).reshape(*packing.mask.shape, width)[packing.mask], x,
                                products)
    context = []
    for first, rows, length in packing.runs:
        q, k, v = qkv[first: first + rows * length].view(rows, length, 3, heads, size).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, scale=attention.scaling)
        context.append(out.transpose(1, 2).reshape(rows * length, width))
    return _after_attention(layer, torch.cat(context) if len(context) > 1 else context[0], x, products)


def _after_attention(layer, context, x, products):
    """The attention output projection, the feed-forward pair, their residual adds and LayerNorms."""
    x = layer.attention.output.LayerNorm(products.linear_add(context, layer.attention.output.dense, x))
    return layer.output.LayerNorm(products.linear_add(products.intermediate(layer.intermediate, x),
                                                      layer.output.dense, x))

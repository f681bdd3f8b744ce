"""``attention heads=H`` and ``transformer heads=H ff=F``: multi-head self-attention over
the sequence flowing in, and a transformer encoder block around it, each written out as
the equations it stands for, numbered on their own counters."""

from __future__ import annotations

from .. import ast
from .base import Example, Expansion, LayerKind, Site
from ...vocab import sig

DOC = """\
- `attention heads=H [causal] [mask=M] [dropout=P] [init=INIT] [bias=zeros|none|INIT]`:
  multi-head self-attention over the sequence coming in, `[N, T, D]` (Vaswani et al.;
  PyTorch's `nn.MultiheadAttention`). It makes `att{j}_Wq, att{j}_Wk, att{j}_Wv,
  att{j}_Wo : [D, D]` (Xavier unless `init=`) with biases `att{j}_bq, …, att{j}_bo : [D]`
  and the equations `att{j}_q = h @ att{j}_Wq + att{j}_bq` (likewise `_k`, `_v`),
  `att{j}_heads = attention(split_heads(att{j}_q, H), split_heads(att{j}_k, H),
  split_heads(att{j}_v, H), …)` (each head `[N, H, T, D/H]`) and `att{j} =
  merge_heads(att{j}_heads) @ att{j}_Wo + att{j}_bo`. `causal`: step t attends to steps
  0..t; `mask=M`: `M : [N, T]` marks the real steps (1) of padded sequences, padding keys
  get weight 0; `dropout=P`: on the attention weights in training. `H` must divide `D`
  (a located error says which counts would); `j` counts attention layers from 1 across
  the file.
- `transformer heads=H ff=F [norm=post|pre] [causal] [mask=M] [dropout=P]`: a
  transformer encoder block (PyTorch's `nn.TransformerEncoderLayer`, ReLU): self-attention
  as `attention` above (named `tf{j}_…`), a residual sum and a layer norm, then the
  feed-forward `relu(h @ tf{j}_W1 + tf{j}_b1) @ tf{j}_W2 + tf{j}_b2` (`W1 : [D, F]`,
  `W2 : [F, D]`), a residual sum and a layer norm (`tf{j}_ln1_gamma`, `…_beta`, `ln2`;
  eps 1e-5). `norm=post` (the default, the original paper's and PyTorch's):
  `tf{j}_n1 = layer_norm(h + att, …)`, out `= layer_norm(tf{j}_n1 + ff(tf{j}_n1), …)`;
  `norm=pre`: `tf{j}_r1 = h + att(layer_norm(h))`, out `= tf{j}_r1 +
  ff(layer_norm(tf{j}_r1))`. `dropout=P` (default 0) drops the attention weights, the
  feed-forward's hidden units and each branch before its residual sum, in training only.
  `j` counts transformer blocks from 1 across the file."""


def _word(site: Site) -> bool | None:
    """Whether the layer line says ``causal``; None, reported, for another bare word."""
    word = site.args["causal"]
    if word is None:
        return False
    if isinstance(word, ast.Name) and word.id == "causal":
        return True
    site.diags.error(f"'{site.layer.name}' takes its counts by name and one word, causal",
                     word.span, f"e.g. '{site.layer.name} heads=4 causal'")
    return None


def _width(site: Site) -> ast.FanIn:
    return ast.FanIn(site.h, rows=True)


class _Writer:
    """Declarations and equations of one block, named ``{base}_…``, in order."""

    def __init__(self, site: Site, base: str, origin: str):
        self.site, self.base, self.origin, self.out = site, base, origin, []

    def name(self, suffix: str) -> ast.Name:
        return ast.Name(self.site.sp, f"{self.base}_{suffix}")

    def param(self, suffix: str, dims: list, init: ast.Expr, what: str) -> ast.Name:
        sp = self.site.sp
        self.out.append(ast.Param(sp, f"{self.base}_{suffix}", self.site.at,
                                  ast.Shape([ast.Dim(d, sp) for d in dims], sp), init,
                                  origin=f"{self.origin}: {what}"))
        return self.name(suffix)

    def eq(self, suffix: str, value: ast.Expr) -> ast.Name:
        site = self.site
        self.out.append(ast.Equation(site.sp, f"{self.base}_{suffix}", site.at, value, "eq",
                                     origin=self.origin))
        return self.name(suffix)

    def call(self, func: str, args: list, **kwargs) -> ast.Call:
        sp = self.site.sp
        return ast.Call(sp, func, self.site.at, args,
                        [ast.Kwarg(k, v, sp) for k, v in kwargs.items() if v is not None])

    def dense(self, x: ast.Expr, suffix: str, dims: list, init: ast.Expr,
              what: str) -> ast.Expr:
        """``x @ W + b`` with ``{base}_W{suffix}`` and ``{base}_b{suffix}`` (no bias for
        ``bias=none``)."""
        sp = self.site.sp
        out: ast.Expr = ast.BinOp(sp, "@", x, self.param(f"W{suffix}", dims, init, what))
        bias = self.site.args.get("bias", "zeros")
        if isinstance(bias, ast.Name) and bias.id == "none":
            return out
        init = ast.Name(sp, bias) if isinstance(bias, str) else bias
        return ast.BinOp(sp, "+", out, self.param(f"b{suffix}", dims[-1:], init,
                                                  f"{what}'s bias"))

    def dropout(self, x: ast.Expr) -> ast.Expr:
        p = self.site.args["dropout"]
        return x if p == 0.0 else self.call("dropout", [x, p])

    def layer_norm(self, x: ast.Expr, suffix: str) -> ast.Call:
        sp, d = self.site.sp, _width(self.site)
        gamma = self.param(f"{suffix}_gamma", [d], ast.Name(sp, "ones"), "a scale, from 1")
        beta = self.param(f"{suffix}_beta", [d], ast.Name(sp, "zeros"), "a shift, from 0")
        return self.call("layer_norm", [x, gamma, beta])


def _self_attention(w: _Writer, x: ast.Expr, heads: int, causal: bool,
                    init: ast.Expr) -> ast.Expr:
    """The projections, the heads' attention and the merged heads' projection: the
    equations up to ``{base}_heads``; the output projection is returned."""
    sp, d = w.site.sp, _width(w.site)
    count = ast.Num(sp, heads, str(heads))
    parts = [w.call("split_heads", [w.eq(n, w.dense(x, n, [d, d], init,
                                                    f"the {what}' projection")), count])
             for n, what in (("q", "queries"), ("k", "keys"), ("v", "values"))]
    p = w.site.args["dropout"]
    heads_out = w.eq("heads", w.call(
        "attention", parts, keys=w.site.args["mask"],
        causal=ast.Name(sp, "true") if causal else None, dropout=None if p == 0.0 else p))
    return w.dense(w.call("merge_heads", [heads_out]), "o", [d, d], init,
                   "the output projection")


def _attention(site: Site) -> Expansion | None:
    causal, heads = _word(site), site.whole("heads", 1)
    if causal is None or heads is None:
        return None
    base = f"att{site.k}"
    w = _Writer(site, base, f"attention layer {site.k}")
    init = site.args["init"] or ast.Name(site.sp, "xavier")
    out = _self_attention(w, site.source(), heads, causal, init)
    return Expansion(w.out, base, out)


def _transformer(site: Site) -> Expansion | None:
    causal, heads, ff = _word(site), site.whole("heads", 1), site.whole("ff", 1)
    norm = site.args["norm"]
    where = norm.id if isinstance(norm, ast.Name) else norm
    if where not in ("post", "pre"):
        site.diags.error("'transformer' norm is where each layer norm goes: post (after "
                         "each residual sum) or pre (before each branch)",
                         norm.span if isinstance(norm, ast.Expr) else site.sp,
                         "e.g. 'transformer heads=4 ff=128 norm=pre'")
        return None
    if causal is None or heads is None or ff is None:
        return None
    sp, base, d = site.sp, f"tf{site.k}", _width(site)
    w = _Writer(site, base, f"transformer block {site.k}")
    x, xavier = site.source(), ast.Name(sp, "xavier")

    def feed_forward(h: ast.Expr) -> ast.Expr:
        hidden = w.eq("f", w.dropout(w.call("relu", [w.dense(h, "1", [d, ff], xavier,
                                                             "the feed-forward's first")])))
        return w.dropout(w.dense(hidden, "2", [ff, d], xavier, "the feed-forward's second"))

    if where == "post":
        att = w.eq("att", _self_attention(w, x, heads, causal, xavier))
        n1 = w.eq("n1", w.layer_norm(ast.BinOp(sp, "+", x, w.dropout(att)), "ln1"))
        return Expansion(w.out, base, w.layer_norm(ast.BinOp(sp, "+", n1, feed_forward(n1)),
                                                   "ln2"))
    att = _self_attention(w, w.eq("n1", w.layer_norm(x, "ln1")), heads, causal, xavier)
    r1 = w.eq("r1", ast.BinOp(sp, "+", x, w.dropout(w.eq("att", att))))
    return Expansion(w.out, base, ast.BinOp(sp, "+", r1, feed_forward(
        w.eq("n2", w.layer_norm(r1, "ln2")))))


KINDS = (LayerKind("attention", sig(("causal", None), "heads", ("mask", None),
                                    ("dropout", 0.0), ("init", None), ("bias", "zeros")),
                   _attention, counter="attention", advances=True),
         LayerKind("transformer", sig(("causal", None), "heads", "ff", ("norm", "post"),
                                      ("mask", None), ("dropout", 0.0)),
                   _transformer, counter="transformer", advances=True))
EXAMPLES = (Example("attention heads=2", "[N, 3, 4]"),
            Example("attention heads=2 causal bias=none; pool mean", "[N, 3, 4]"),
            Example("transformer heads=2 ff=6; pool mean", "[N, 3, 4]"),
            Example("transformer heads=2 ff=6 norm=pre causal", "[N, 3, 4]"),
            Example("attention heads=2 dropout=0.3; transformer heads=1 ff=5 dropout=0.2",
                    "[N, 3, 4]"))

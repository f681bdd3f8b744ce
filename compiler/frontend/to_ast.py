"""Lark's parse tree -> ``ast.Spec``: one transformer method per grammar rule, each
node given the span it was written at."""

from __future__ import annotations

from lark import Token, Transformer, v_args

from . import ast
from ..errors import Diagnostic, Span, SpecError
from .tokens import tok_span


def number_value(text: str) -> int | float:
    if all(c.isdigit() for c in text):
        return int(text)
    return float(text)


def _unquote(s: str) -> str:
    body = s[1:-1]
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class ToAst(Transformer):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _span(self, meta) -> Span:
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> Span:
        return tok_span(tok, self.path)

    # statements --------------------------------------------------------------
    @v_args(meta=True)
    def start(self, meta, items):
        return ast.Spec(self.path, "", list(items))

    @v_args(meta=True)
    def model_stmt(self, meta, c):
        return ast.ModelStmt(self._span(meta), str(c[0]), self._tspan(c[0]))

    @v_args(meta=True)
    def dtype_stmt(self, meta, c):
        return ast.DtypeStmt(self._span(meta), str(c[0]), self._tspan(c[0]))

    @v_args(meta=True)
    def let_stmt(self, meta, c):
        return ast.Let(self._span(meta), str(c[0]), self._tspan(c[0]), c[1])

    @v_args(meta=True)
    def input_shaped(self, meta, c):
        return ast.Input(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], c[2])

    @v_args(meta=True)
    def input_default(self, meta, c):
        return ast.Input(self._span(meta), str(c[0]), self._tspan(c[0]), None, c[1])

    @v_args(meta=True)
    def target_stmt(self, meta, c):
        return ast.Target(self._span(meta), str(c[0]), self._tspan(c[0]), c[1])

    @v_args(meta=True)
    def param_shaped(self, meta, c):
        return ast.Param(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], c[2])

    @v_args(meta=True)
    def param_scalar(self, meta, c):
        return ast.Param(self._span(meta), str(c[0]), self._tspan(c[0]), None, c[1])

    @v_args(meta=True)
    def state_stmt(self, meta, c):
        return ast.State(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], c[2])

    @v_args(meta=True)
    def eq_stmt(self, meta, c):
        return ast.Equation(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], "eq")

    @v_args(meta=True)
    def step_stmt(self, meta, c):
        return ast.Equation(self._span(meta), str(c[0]), self._tspan(c[0]), c[2], "eq",
                            time=str(c[1]), time_span=self._tspan(c[1]), init=c[3])

    @v_args(meta=True)
    def output_stmt(self, meta, c):
        return ast.Equation(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], "output")

    @v_args(meta=True)
    def loss_stmt(self, meta, c):
        return ast.Equation(self._span(meta), str(c[0]), self._tspan(c[0]), c[1], "loss")

    @v_args(meta=True)
    def grad_stmt(self, meta, c):
        return ast.GradWrt(self._span(meta), [(str(t), self._tspan(t)) for t in c])

    @v_args(meta=True)
    def optimizer_stmt(self, meta, c):
        args, kwargs = c[1] if c[1] is not None else ([], [])
        return ast.Optimizer(self._span(meta), str(c[0]), self._tspan(c[0]), args, kwargs)

    @v_args(meta=True)
    def train_stmt(self, meta, c):
        return ast.Train(self._span(meta), list(c))

    @v_args(meta=True)
    def setting(self, meta, c):
        return ast.Setting(str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def data_file(self, meta, c):
        return ast.Data(self._span(meta), _unquote(str(c[0])), None, self._tspan(c[0]))

    @v_args(meta=True)
    def data_builtin(self, meta, c):
        args, kwargs = c[1] if c[1] is not None else ([], [])
        return ast.Data(self._span(meta), None, str(c[0]), self._tspan(c[0]), args, kwargs)

    @v_args(meta=True)
    def layers_stmt(self, meta, c):
        src, out, *items = c
        return ast.Layers(self._span(meta), str(src), self._tspan(src), str(out),
                          self._tspan(out), items)

    @v_args(meta=True)
    def layer(self, meta, c):
        name, call, *opts = c
        args, kwargs = call if call is not None else ([], [])
        args, kwargs = list(args), list(kwargs)
        for kind, value in opts:
            (kwargs if kind == "kw" else args).append(value)
        return ast.Layer(name=str(name), span=self._span(meta), name_span=self._tspan(name),
                         args=args, kwargs=kwargs)

    def layer_pos_number(self, c):
        tok = c[0]
        return ("pos", ast.Num(self._tspan(tok), number_value(str(tok)), str(tok)))

    def layer_pos_name(self, c):
        tok = c[0]
        return ("pos", ast.Name(self._tspan(tok), str(tok)))

    @v_args(meta=True)
    def layer_kw(self, meta, c):
        return ("kw", ast.Kwarg(str(c[0]), c[1], self._span(meta)))

    @v_args(meta=True)
    def repeat(self, meta, c):
        return ast.Repeat(c[0], list(c[1:]), self._span(meta))

    @v_args(meta=True)
    def block(self, meta, c):
        return ast.Block(str(c[0]), self._tspan(c[0]), list(c[1:]), self._span(meta))

    # shapes ----------------------------------------------------------------------
    @v_args(meta=True)
    def scalar_shape(self, meta, c):
        return ast.Shape([], self._span(meta))

    @v_args(meta=True)
    def dims_shape(self, meta, c):
        dims = [d for d in c if d is not None]
        return ast.Shape(dims, self._span(meta))

    def dim(self, c):
        tok = c[0]
        value = number_value(str(tok)) if tok.type == "NUMBER" else str(tok)
        return ast.Dim(value, self._tspan(tok))

    # expressions -------------------------------------------------------------------
    def _bin(op):
        @v_args(meta=True)
        def build(self, meta, c):
            return ast.BinOp(self._span(meta), op, c[0], c[1])
        return build

    add, sub, mul, div = _bin("+"), _bin("-"), _bin("*"), _bin("/")
    matmul, pow = _bin("@"), _bin("^")
    del _bin

    @v_args(meta=True)
    def neg(self, meta, c):
        return ast.Neg(self._span(meta), c[0])

    @v_args(meta=True)
    def pos(self, meta, c):
        return c[0]

    @v_args(meta=True)
    def transpose(self, meta, c):
        return ast.Transpose(self._span(meta), c[0])

    @v_args(meta=True)
    def index(self, meta, c):
        return ast.Index(self._span(meta), c[0], c[1])

    def subscripts(self, c):
        return list(c)

    @v_args(meta=True)
    def slice(self, meta, c):
        start, stop, step = c
        return ast.Slice(self._span(meta), start, stop, step)

    def number(self, c):
        tok = c[0]
        return ast.Num(self._tspan(tok), number_value(str(tok)), str(tok))

    def name(self, c):
        return ast.Name(self._tspan(c[0]), str(c[0]))

    @v_args(meta=True)
    def call(self, meta, c):
        args, kwargs = c[1] if c[1] is not None else ([], [])
        return ast.Call(self._span(meta), str(c[0]), self._tspan(c[0]), args, kwargs)

    def arglist(self, c):
        args = [a for a in c if not isinstance(a, ast.Kwarg)]
        kwargs = [a for a in c if isinstance(a, ast.Kwarg)]
        for a, b in zip(c, c[1:]):
            if isinstance(a, ast.Kwarg) and not isinstance(b, ast.Kwarg):
                raise SpecError(Diagnostic(
                    "a positional argument cannot follow a keyword argument", b.span,
                    f"move it before '{a.name}=' or name it"))
        return args, kwargs

    @v_args(meta=True)
    def kwarg(self, meta, c):
        return ast.Kwarg(str(c[0]), c[1], self._span(meta))

    @v_args(meta=True)
    def matrix(self, meta, c):
        rows = [r for r in c if r is not None]
        return ast.Matrix(self._span(meta), rows)

    def row(self, c):
        return list(c)

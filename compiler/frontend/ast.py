"""The abstract syntax tree of a ``.bp`` spec. Every node carries its ``Span``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span


# ----------------------------------------------------------------------------- expressions
@dataclass
class Expr:
    span: Span


@dataclass
class Num(Expr):
    value: float | int
    text: str


@dataclass
class Name(Expr):
    id: str


@dataclass
class Kwarg:
    name: str
    value: Expr
    span: Span


@dataclass
class Call(Expr):
    func: str
    func_span: Span
    args: list[Expr]
    kwargs: list[Kwarg]


@dataclass
class BinOp(Expr):
    op: str  # one of + - * / @ ^
    left: Expr
    right: Expr
    # Set by desugaring for a residual connection: the operands must have one shape
    # (no broadcasting), else a located error.
    same_shape: bool = False


@dataclass
class Neg(Expr):
    operand: Expr


@dataclass
class Transpose(Expr):
    operand: Expr


@dataclass
class Matrix(Expr):
    rows: list[list[Expr]]


@dataclass
class Slice(Expr):
    """``start:stop:step`` inside ``x[...]``; an omitted part is None."""

    start: Expr | None
    stop: Expr | None
    step: Expr | None


@dataclass
class Index(Expr):
    """``x[i, a:b, ...]``: one item (an index expression or a ``Slice``) per axis."""

    value: Expr
    items: list[Expr]


# ----------------------------------------------------------------------------- shapes
@dataclass
class FanIn:
    """A dimension fixed by elaboration: the last dimension of value ``of``.

    Produced only by the layer-stack expansion (``dense M`` needs ``fan_in``). With
    ``axis=1`` it is the channel count of an image batch ``[N, C, H, W]`` (``conv``), and
    with ``features`` the feature axis a batchnorm layer normalizes (axis 1 as well); with
    ``rows`` the last axis of a value of any rank, which a layernorm layer normalizes."""

    of: str
    axis: int = -1
    features: bool = False  # batchnorm: axis 1 of [N, D] or [N, C, H, W]
    rows: bool = False  # layernorm: the last axis of [N, D], [N, T, D], ...

    @property
    def layer(self) -> str:
        """The kind of layer this dimension sizes, as messages name it."""
        return ("batchnorm" if self.features else "layernorm" if self.rows
                else "conv" if self.axis == 1 else "dense")


@dataclass
class Dim:
    value: int | str | FanIn
    span: Span


@dataclass
class Shape:
    dims: list[Dim]
    span: Span


# ----------------------------------------------------------------------------- statements
@dataclass
class Stmt:
    span: Span


@dataclass
class Decl(Stmt):
    """Anything that defines a name."""

    name: str
    name_span: Span


@dataclass
class ModelStmt(Stmt):
    name: str
    name_span: Span


@dataclass
class DtypeStmt(Stmt):
    name: str
    name_span: Span


@dataclass
class Let(Decl):
    value: Expr


@dataclass
class Input(Decl):
    shape: Shape | None
    default: Expr | None


@dataclass
class Target(Decl):
    shape: Shape


@dataclass
class Param(Decl):
    shape: Shape | None
    init: Expr
    # Set by the layer expansion: "he (dense layer 1 followed by relu)".
    origin: str | None = None


@dataclass
class State(Decl):
    """``state NAME : SHAPE = INIT``: a value that is not trained but updated by the
    training pass and read in inference (batch norm's running mean and variance)."""
    shape: Shape
    init: Expr
    origin: str | None = None  # set by the layer expansion


@dataclass
class Equation(Decl):
    value: Expr | None  # None only for ``output NAME`` naming an existing value
    kind: str = "eq"  # "eq", "output" or "loss"
    origin: str | None = None
    # A step of a loop over time, ``h[t] = ... from h0`` (LANGUAGE.md, "Recurrences"):
    # the time variable and where it is written, and the carried value's initial value.
    time: str | None = None
    time_span: Span | None = None
    init: Expr | None = None


@dataclass
class GradWrt(Stmt):
    names: list[tuple[str, Span]]


@dataclass
class Optimizer(Stmt):
    name: str
    name_span: Span
    args: list[Expr]
    kwargs: list[Kwarg]


@dataclass
class Setting:
    key: str
    value: Expr
    span: Span


@dataclass
class Train(Stmt):
    settings: list[Setting]


@dataclass
class Data(Stmt):
    path: str | None  # a file path (string literal), or
    name: str | None  # a built-in generator name
    name_span: Span
    args: list[Expr] = field(default_factory=list)
    kwargs: list[Kwarg] = field(default_factory=list)


@dataclass
class Layer:
    name: str
    span: Span
    name_span: Span
    args: list[Expr]
    kwargs: list[Kwarg]


@dataclass
class Repeat:
    count: Expr
    items: list[Layer | Repeat]
    span: Span


@dataclass
class Block:
    """``NAME { layers }`` inside a stack; ``residual`` is the one block: its layers'
    output plus its input."""
    name: str
    name_span: Span
    items: list[Layer | Repeat | Block]
    span: Span


@dataclass
class Layers(Stmt):
    source: str
    source_span: Span
    out: str
    out_span: Span
    items: list[Layer | Repeat]


@dataclass
class Spec:
    path: str
    source: str
    statements: list[Stmt]
    constants: dict[str, float | int] = field(default_factory=dict)  # set by desugar
    # The names of layer stacks whose every layer was refused (reported): their uses are
    # not reported again as unknown names. Set by desugar.
    refused: set[str] = field(default_factory=set)

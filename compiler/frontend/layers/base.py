"""What a layer kind is, and what its desugaring is given.

A ``LayerKind`` is one word of a ``layers`` stack: its signature (arguments, defaults),
the counter its names are numbered on, and ``expand``, which turns one layer line into
the parameters, states and equation it stands for. A ``BlockKind`` is a word that opens
a ``{ … }`` block of layers (``residual``) and closes it with one equation. ``Site`` is
what ``expand`` is given: the layer line, its bound arguments, the value flowing in and
the layer's number; its helpers are the checks several kinds share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from .. import ast
from ..constants import NotConstant, const_value
from ...errors import Diagnostics, Span
from ...vocab import Signature, whole_number

WEIGHTS = "weights"  # a role: the layer owns W{k}, b{k} and advances k
ACTIVATION = "activation"  # a role: it chooses the default initializer of the layer before


@dataclass(frozen=True)
class Expansion:
    """What one layer line stands for: declarations (and earlier steps' equations), then
    ``name = value``."""

    decls: list[ast.Stmt]  # parameters, and equations of the steps before its own
    name: str  # the equation's name (the stack's last equation takes OUT instead)
    value: ast.Expr


@dataclass(frozen=True)
class Example:
    """A stack that uses a kind: its tests compile it and compare it with the oracle."""

    layers: str  # the items inside the braces
    input: str = "[N, 4]"  # the shape of the value flowing in


@dataclass(frozen=True)
class LayerKind:
    name: str
    signature: Signature
    expand: Callable[[Site], Expansion | None]  # None: a problem was reported
    counter: str = "weighted"  # the number in the layer's names: k, shared by dense and conv
    advances: bool = False  # the layer takes the next number of its counter
    role: str = ""  # WEIGHTS, ACTIVATION or neither
    relu_family: bool = False  # an activation after which weights default to He


@dataclass(frozen=True)
class BlockKind:
    name: str
    counter: str
    close: Callable[[Site, str, Span], Expansion]  # given the value that entered the block
    summary: str  # what the closing equation computes, for its origin
    empty_hint: str  # the hint when a block has no layers


@dataclass
class Site:
    """One layer line being desugared; ``stack[position]`` is the layer itself."""

    layer: ast.Layer | ast.Block
    args: dict[str, object]
    h: str  # the value flowing in
    h_span: Span
    k: int  # the layer's number on its counter
    stack: Sequence
    position: int
    kinds: Mapping[str, LayerKind]
    constants: dict[str, float | int]
    diags: Diagnostics
    time: str = "t"  # the time variable of a recurrent layer's steps: a name not declared

    @property
    def sp(self) -> Span:
        return self.layer.span

    @property
    def at(self) -> Span:
        return self.layer.name_span

    def source(self) -> ast.Name:
        return ast.Name(self.h_span, self.h)

    def whole(self, key: str, low: int) -> int | None:
        """A count option (filters, size, stride, pad) as a whole number >= low; None,
        reported, if it is not one."""
        value = self.args[key]
        if not isinstance(value, ast.Expr):
            return value
        name = self.layer.name
        try:
            number = const_value(value, self.constants)
        except NotConstant as e:
            self.diags.error(e.message(f"'{key}' of '{name}' must be a constant"), e.expr.span,
                             e.hint)
            return None
        whole = whole_number(number)
        if whole is None or whole < low:
            self.diags.error(f"'{key}' of '{name}' must be a whole number >= {low}, not "
                             f"{number!r}", value.span)
            return None
        return whole

    def window(self, key: str, low: int) -> int | tuple[int, int] | None:
        """A window option (size, stride, pad): a whole number >= low for both axes, or
        ``[rows, columns]`` (a pair of equal numbers is that number); None, reported,
        if it is neither."""
        value = self.args[key]
        if not isinstance(value, ast.Matrix):
            return self.whole(key, low)
        try:
            number = const_value(value, self.constants)
        except NotConstant as e:
            self.diags.error(e.message(f"'{key}' of '{self.layer.name}' must be a constant"),
                             e.expr.span, e.hint)
            return None
        whole = [whole_number(v) for v in number] if len(value.rows) == 1 else []
        if len(whole) != 2 or any(v is None or v < low for v in whole):
            self.diags.error(f"'{key}' of '{self.layer.name}' must be a whole number >= {low} "
                             "or a list [rows, columns] of two", value.span)
            return None
        return whole[0] if whole[0] == whole[1] else tuple(whole)

    def spelled(self, value: int | tuple[int, int]) -> ast.Expr:
        """A window setting written back as the spec's literal: 2, or [1, 2]."""
        sp = self.sp
        if isinstance(value, int):
            return ast.Num(sp, value, str(value))
        return ast.Matrix(sp, [[ast.Num(sp, v, str(v)) for v in value]])

    def weights_init(self) -> tuple[ast.Expr, str | None]:
        """The weights' initializer and, when it is the default, why: He before a
        ReLU-family activation, else Xavier."""
        init = self.args["init"]
        if init is not None:
            return init, None
        nxt = self._next_activation()
        he = nxt is not None and self.kinds[nxt].relu_family
        default = "he" if he else "xavier"
        return ast.Name(self.sp, default), (
            f"{default}: the default for a {self.layer.name} layer "
            + (f"followed by {nxt}" if he else "not followed by a ReLU-family activation"))

    def _next_activation(self) -> str | None:
        """The activation after this weighted layer (None if another weighted layer comes
        first)."""
        for later in islice(self.stack, self.position + 1, None):
            kind = self.kinds.get(later.name)
            if kind is not None and kind.role in (ACTIVATION, WEIGHTS):
                return later.name
        return None

    def bias(self, name: str, shape: list[ast.Dim]) -> ast.Param | None:
        """The bias parameter ``bias=`` asks for (None for ``bias=none``)."""
        bias = self.args["bias"]
        if isinstance(bias, ast.Name) and bias.id == "none":
            return None
        init = ast.Name(self.sp, bias) if isinstance(bias, str) else bias
        return ast.Param(self.sp, name, self.at, ast.Shape(shape, self.sp), init)

"""Algebraic identities: x*1, 1*x, x+0, 0+x, x-0, 0-x, x/1, --x, x^1, x^0, x^-1, 0*x,
a reshape to the shape its value has, a reshape undone by the next,
multiplications by ``ones_like`` that do not change the shape, the backward pass's seed
gathered into the scalar its first adjoint is scaled by, and a sum of slice adjoints
(``index_add``) gathered into one buffer, and slice adjoints that fill the whole value
joined (``np.concatenate``, the book's ``np.hstack`` of the LSTM's gate adjoints).

Every rewrite keeps the node's shape, dtype and array-ness (a Python number never stands
for an array): ``0 * x`` becomes ``zeros_like(x)`` unless the result is a Python number,
and ``x * ones_like(y)`` becomes ``x`` only when ``x`` already has the shape.
"""

from __future__ import annotations

from ..ir import Program
from . import rewrite


def _is(node, value) -> bool:
    return node.is_const and not isinstance(node.value, tuple) and node.value == value


def _scalar_const(node) -> bool:
    return node.is_const and not isinstance(node.value, tuple)


def _same_shape(x, node):
    """Whether ``x`` can stand for ``node``: shape, dtype, and an array where ``node`` is
    one (a Python number in place of an array would change the module's dtype)."""
    return x.shape == node.shape and x.dtype == node.dtype and (x.is_array or not
                                                                  node.is_array)


def _zero_like(b, x, node):
    if node.shape == () and not node.is_array:
        return b.const(0)
    return b.op("zeros_like", x if x.shape == node.shape else b.op("ones_like", x))


def _identities(b, node, args):
    op = node.op
    if op == "mul":
        x, y = args
        for one, other in ((x, y), (y, x)):
            if _is(one, 1) and _same_shape(other, node):
                return other
            if one.op == "ones_like" and _same_shape(other, node):
                return other
        for zero, other in ((x, y), (y, x)):
            if _is(zero, 0) and other.shape == node.shape:
                return _zero_like(b, other, node)
        # c1 * (c2 * z), (c2 * z) * c1, … -> (c1 c2) * z for scalar constants
        for c, other in ((x, y), (y, x)):
            if not _scalar_const(c) or other.op != "mul":
                continue
            for inner_c, z in ((other.args[0], other.args[1]), (other.args[1], other.args[0])):
                if _scalar_const(inner_c) and z.shape == node.shape:
                    product = c.value * inner_c.value
                    if product == 1 and _same_shape(z, node):
                        return z
                    from .fold import let_names, let_text

                    return b.op("mul", b.const(product, let=let_text(
                        "mul", [c, inner_c], {}, node), let_names=let_names([c, inner_c])),
                        z)
        return _seed_gathered(b, node, x, y)
    elif op == "add":
        x, y = args
        if _is(y, 0) and _same_shape(x, node):
            return x
        if _is(x, 0) and _same_shape(y, node):
            return y
        if y.op == "zeros_like" and _same_shape(x, node):
            return x
        if x.op == "zeros_like" and _same_shape(y, node):
            return y
        return _into_index_add(b, x, y, node)
    elif op == "sub":
        x, y = args
        if _is(y, 0) and _same_shape(x, node):
            return x
        if _is(x, 0) and _same_shape(y, node):
            return b.op("neg", y)
    elif op == "div":
        x, y = args
        if _is(y, 1) and _same_shape(x, node):
            return x
    elif op == "neg":
        (x,) = args
        if x.op == "neg":
            return x.args[0]
    elif op in ("reshape", "reshape_like"):
        x = args[0]
        if _same_shape(x, node):  # a reshape to the shape it has
            return x
        if x.op in ("reshape", "reshape_like") and _same_shape(x.args[0], node):
            return x.args[0]  # there and back: [C] -> [C, 1, 1] -> [C]
    elif op == "pow":
        x, y = args
        if _is(y, 1) and _same_shape(x, node):
            return x
        if _is(y, 0):
            return b.const(1) if node.shape == () and not node.is_array else \
                b.op("ones_like", x)
        if _is(y, -1):
            return b.op("div", b.const(1), x)
    elif op == "index_add":
        return _joined_slices(b, args, node)
    return None


def _seeded(node) -> bool:
    """Whether ``node`` is the backward pass's seed (``scale``) or Python arithmetic on it."""
    return node.op == "seed" or (node.weak and any(_seeded(a) for a in node.args))


def _seed_gathered(b, node, x, y):
    """``(z * c) * scale`` -> ``(c * scale) * z`` and ``(z / c) * scale`` -> ``(scale / c)
    * z`` for a Python number ``c`` and an array ``z``: the seed joins the scalar the
    first adjoint is scaled by already (``dL_dy *= scale / x.shape[0]``), one pass over
    the array, not two. Scalars keep their order (``2 * (f3 - y) * scale``)."""
    for s, other in ((x, y), (y, x)):
        if not _seeded(s) or other.op not in ("mul", "div"):
            continue
        pairs = [other.args] if other.op == "div" else [other.args, other.args[::-1]]
        for z, c in pairs:
            if c.weak and z.shape and _same_shape(z, node):
                inner = b.op(other.op, s, c) if other.op == "div" else b.op("mul", c, s)
                return b.op("mul", _identities(b, inner, inner.args) or inner, z)
    return None


def _into_index_add(b, x, y, node):
    """``index_add(zeros_like(v), g, [i]) + c`` -> ``index_add(c, g, [i])`` when ``c`` is a
    full array of the node's shape: the adjoint of a value used through slices and other
    ways (or through several slices) is one buffer the slices add into, printed
    ``dL_dv = c`` then ``dL_dv[i] += g``."""
    for part, other in ((x, y), (y, x)):
        if part.op != "index_add" or part.args[0].op != "zeros_like" \
                or not _same_shape(part, node):
            continue
        if other.op == "index_add" and _same_shape(other, node):
            return b.op("index_add", *other.args, *part.args[1:],
                        index=other.attr("index") + part.attr("index"))
        if _same_shape(other, node):
            return b.op("index_add", other, *part.args[1:], index=part.attr("index"))
    return None


def _joined_slices(b, args, node):
    """``index_add(zeros_like(v), g1, ..., gk)`` whose slices, along one axis, tile all
    of ``v`` -> ``concat(g1, ..., gk)`` in the slices' order: no zeros written and then
    added into, and ``v`` itself not read (a loop keeps no step value for its shape)."""
    base, parts, where = args[0], args[1:], node.attr("index")
    if base.op != "zeros_like" or not node.is_array:
        return None
    axes = {k for index in where for k, it in enumerate(index) if it is not None}
    if len(axes) != 1:
        return None
    axis = axes.pop()
    size = node.shape[axis]
    if not isinstance(size, int) or any(not isinstance(index[axis], tuple) for index in where):
        return None
    spans = sorted(((range(size)[slice(*index[axis])], k) for k, index in enumerate(where)),
                   key=lambda item: item[0].start)
    start = 0
    for span, k in spans:
        part = parts[k]
        if span.step != 1 or span.start != start or not part.is_array \
                or part.dtype != node.dtype \
                or part.shape != node.shape[:axis] + (len(span),) + node.shape[axis + 1:]:
            return None
        start = span.stop
    if start != size:
        return None
    return b.op("concat", *(parts[k] for _, k in spans), axis=axis)


def simplify_algebra(prog: Program) -> Program:
    return rewrite(prog, _identities)

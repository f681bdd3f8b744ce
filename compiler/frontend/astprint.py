"""``bpc show --stage ast``: the desugared spec, printed back in spec syntax.

Shows what a layer stack expands to (LANGUAGE.md §6) with the names it chose.
"""

from __future__ import annotations

from . import ast

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2, "^": 4}


def expr(e: ast.Expr, outer: int = 0) -> str:
    if isinstance(e, ast.Num):
        return e.text
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.BinOp):
        p = _PREC[e.op]
        if e.op == "^":
            text = f"{expr(e.left, 5)}^{expr(e.right, 3)}"
        else:
            text = f"{expr(e.left, p)} {e.op} {expr(e.right, p + 1)}"
        return f"({text})" if p < outer else text
    if isinstance(e, ast.Neg):
        text = f"-{expr(e.operand, 3)}"
        return f"({text})" if outer > 3 else text
    if isinstance(e, ast.Transpose):
        return f"{expr(e.operand, 5)}.T"
    if isinstance(e, ast.Index):
        return f"{expr(e.value, 5)}[{', '.join(expr(i) for i in e.items)}]"
    if isinstance(e, ast.Slice):
        parts = ["" if x is None else expr(x) for x in (e.start, e.stop, e.step)]
        return ":".join(parts if e.step is not None else parts[:2])
    if isinstance(e, ast.Call):
        parts = [expr(a) for a in e.args] + [f"{k.name}={expr(k.value)}" for k in e.kwargs]
        return f"{e.func}({', '.join(parts)})"
    if isinstance(e, ast.Matrix):
        return "[" + "; ".join(", ".join(expr(x) for x in row) for row in e.rows) + "]"
    raise AssertionError(e)


def _shape(shape: ast.Shape | None) -> str:
    if shape is None:
        return ""
    dims = [(f"fan_in({d.value.of})" if d.value.axis == -1 else f"channels({d.value.of})")
            if isinstance(d.value, ast.FanIn) else str(d.value)
            for d in shape.dims]
    return " : " + ("scalar" if not dims else "[" + ", ".join(dims) + "]")


def show_ast(spec: ast.Spec) -> str:
    out = [f"# {spec.path}, desugared"]
    for st in spec.statements:
        if isinstance(st, ast.ModelStmt):
            out.append(f"model {st.name}")
        elif isinstance(st, ast.DtypeStmt):
            out.append(f"dtype {st.name}")
        elif isinstance(st, ast.Let):
            out.append(f"let {st.name} = {expr(st.value)}")
        elif isinstance(st, ast.Input):
            default = f" = {expr(st.default)}" if st.default is not None else ""
            out.append(f"input {st.name}{_shape(st.shape)}{default}")
        elif isinstance(st, ast.Target):
            out.append(f"target {st.name}{_shape(st.shape)}")
        elif isinstance(st, ast.Param):
            note = f"  # {st.origin}" if st.origin else ""
            out.append(f"param {st.name}{_shape(st.shape)} = {expr(st.init)}{note}")
        elif isinstance(st, ast.State):
            note = f"  # {st.origin}" if st.origin else ""
            out.append(f"state {st.name}{_shape(st.shape)} = {expr(st.init)}{note}")
        elif isinstance(st, ast.Equation):
            word = {"eq": "", "output": "output ", "loss": "loss "}[st.kind]
            value = f" = {expr(st.value)}" if st.value is not None else ""
            note = f"  # {st.origin}" if st.origin else ""
            step = f"[{st.time}]" if st.time else ""
            init = f" from {expr(st.init)}" if st.init is not None else ""
            out.append(f"{word}{st.name}{step}{value}{init}{note}")
        elif isinstance(st, ast.GradWrt):
            out.append("grad wrt " + ", ".join(n for n, _ in st.names))
        elif isinstance(st, ast.Optimizer):
            args = ", ".join(f"{k.name}={expr(k.value)}" for k in st.kwargs)
            out.append(f"optimizer {st.name}({args})")
        elif isinstance(st, ast.Train):
            out.append("train { " + "; ".join(f"{s.key} = {expr(s.value)}"
                                              for s in st.settings) + " }")
        elif isinstance(st, ast.Data):
            if st.path is not None:
                out.append("data " + '"' + st.path.replace("\\", "\\\\").replace('"', '\\"') + '"')
            else:
                args = [expr(a) for a in st.args] + [f"{k.name}={expr(k.value)}"
                                                     for k in st.kwargs]
                out.append(f"data {st.name}" + (f"({', '.join(args)})" if args else ""))
    return "\n".join(out) + "\n"

"""The grammar and AST: every LANGUAGE.md construct parses, with the stated precedence."""

import re

import pytest

from bpc.compiler.frontend import ast
from bpc.compiler.errors import SpecError
from bpc.compiler.frontend.load import load_text
from bpc.compiler.frontend.parser import parse
from conftest import REPO, SPECS

LANGUAGE_MD = REPO.parent / "shared" / "LANGUAGE.md"


def expr(text):
    spec = parse(f"v = {text}\n", "e.bp")
    return spec.statements[0].value


def show(e):
    """Fully parenthesised rendering, to test precedence and associativity."""
    if isinstance(e, ast.Num):
        return e.text
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.BinOp):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, ast.Neg):
        return f"(-{show(e.operand)})"
    if isinstance(e, ast.Transpose):
        return f"{show(e.operand)}.T"
    if isinstance(e, ast.Call):
        parts = [show(a) for a in e.args] + [f"{k.name}={show(k.value)}" for k in e.kwargs]
        return f"{e.func}({', '.join(parts)})"
    if isinstance(e, ast.Matrix):
        return "[" + "; ".join(", ".join(show(x) for x in row) for row in e.rows) + "]"
    if isinstance(e, ast.Index):
        return f"{show(e.value)}[{', '.join(show(i) for i in e.items)}]"
    if isinstance(e, ast.Slice):
        return "<" + ":".join("_" if p is None else show(p) for p in (e.start, e.stop, e.step)) \
            + ">"
    raise AssertionError(e)


@pytest.mark.parametrize("text, tree", [
    ("-x^2", "(-(x ^ 2))"),
    ("-x**2", "(-(x ** 2))".replace("**", "^")),
    ("a^b^c", "(a ^ (b ^ c))"),
    ("a - b - c", "((a - b) - c)"),
    ("a + b * c", "(a + (b * c))"),
    ("a @ W + b", "((a @ W) + b)"),
    ("x @ W.T", "(x @ W.T)"),
    ("(a + b).T", "(a + b).T"),
    ("a * b / c @ d", "(((a * b) / c) @ d)"),
    ("2 ^ -1", "(2 ^ (-1))"),
    ("--x", "(-(-x))"),
    ("+x", "x"),
    ("f(a, b=2)", "f(a, b=2)"),
    ("[1, 2; 3, 4]", "[1, 2; 3, 4]"),
    ("[.5, 1e-3, 2.5E+4]", "[.5, 1e-3, 2.5E+4]"),
    ("-a.T^2", "(-(a.T ^ 2))"),
    # indexing: a postfix, like .T; '[' where a value begins is a matrix literal
    ("x[0]", "x[0]"),
    ("x[-1]", "x[(-1)]"),
    ("x[:, 0:3]", "x[<_:_:_>, <0:3:_>]"),
    ("x[::-1, 1:, :2, ::]", "x[<_:_:(-1)>, <1:_:_>, <_:2:_>, <_:_:_>]"),
    ("x[a:b:s]", "x[<a:b:s>]"),
    ("x[t + 1, 2 * k:]", "x[(t + 1), <(2 * k):_:_>]"),
    ("-x[0]^2", "(-(x[0] ^ 2))"),
    ("x[0].T", "x[0].T"),
    ("x.T[0]", "x.T[0]"),
    ("x[0][1:]", "x[0][<1:_:_>]"),
    ("f(a)[0] @ W", "(f(a)[0] @ W)"),
    ("(a + b)[1]", "(a + b)[1]"),
    ("[1, 2; 3, 4][1]", "[1, 2; 3, 4][1]"),
    ("concat([a, b[0]], axis=-1)", "concat([a, b[0]], axis=(-1))"),
])
def test_precedence(text, tree):
    assert show(expr(text)) == tree


def test_numbers_keep_int_and_float():
    values = [e.value for e in expr("[3, 0.5, .5, 1e-3, 2.5E+4]").rows[0]]
    assert values == [3, 0.5, 0.5, 0.001, 25000.0]
    assert isinstance(values[0], int)


def test_newlines_inside_brackets_do_not_end_statements():
    spec = parse("v = f(a,\n  b) + [1, 2;\n 3, 4]\nw = v\n", "e.bp")
    assert [type(s).__name__ for s in spec.statements] == ["Equation", "Equation"]


def test_semicolons_and_comments():
    spec = parse("let A = 1; let B = 2 # two constants\n# a comment line\n\nlet C = 3;\n", "e.bp")
    assert [s.name for s in spec.statements] == ["A", "B", "C"]


def test_statement_forms():
    spec = parse("""model m
dtype float32
let D = 6
input x : [N, D]
input tax = 1.1
target t : [N]
param W : [D, 3] = normal(mean=0, std=0.1)
param b = 0.5
h = x @ W + b
output y = h
loss L = softmax_cross_entropy(y, t)
grad wrt x, W
optimizer adam(lr=1e-3, beta1=0.9)
train {
  epochs = 3
  batch = 32; seed = 1
  shuffle = false
}
data spiral(n=50, classes=3)
""", "m.bp")
    kinds = [type(s).__name__ for s in spec.statements]
    assert kinds == ["ModelStmt", "DtypeStmt", "Let", "Input", "Input", "Target", "Param",
                     "Param", "Equation", "Equation", "Equation", "GradWrt", "Optimizer",
                     "Train", "Data"]
    x = spec.statements[3]
    assert [d.value for d in x.shape.dims] == ["N", "D"]
    assert spec.statements[4].default.value == 1.1 and spec.statements[4].shape is None
    assert [s.key for s in spec.statements[13].settings] == ["epochs", "batch", "seed", "shuffle"]
    assert spec.statements[14].name == "spiral"


def test_data_file_and_scalar_shapes():
    spec = parse('input x : scalar\ninput y : []\ndata "d/train.npz"\n', "e.bp")
    assert spec.statements[0].shape.dims == [] and spec.statements[1].shape.dims == []
    assert spec.statements[2].path == "d/train.npz"


def test_spans_point_at_source():
    spec = parse("input x : [N, 2]\nh = relu(x)  # c\n", "s.bp")
    eq = spec.statements[1]
    assert (eq.span.line, eq.span.col, eq.span.end_col) == (2, 1, 12)
    call = eq.value
    assert (call.func_span.col, call.func_span.end_col) == (5, 9)
    assert call.args[0].span.col == 10


def test_layer_stack_expands_with_textbook_names():
    spec = load_text("""input x : [N, 4]
target t : [N, 3]
layers x -> y {
  dense 8
  relu
  repeat 2 { dense 8 init=lecun; tanh }
  dense 3 bias=none
}
loss L = softmax_cross_entropy(y, t)
""", "l.bp")
    params = [(s.name, s.init.id if isinstance(s.init, ast.Name) else s.init)
              for s in spec.statements if isinstance(s, ast.Param)]
    assert [p for p, _ in params] == ["W1", "b1", "W2", "b2", "W3", "b3", "W4"]
    assert dict(params)["W1"] == "he"  # followed by relu
    assert dict(params)["W4"] == "xavier"  # not followed by a ReLU-family activation
    eqs = [s.name for s in spec.statements if isinstance(s, ast.Equation)]
    assert eqs == ["a1", "z1", "a2", "z2", "a3", "z3", "y", "L"]


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_gallery_specs_check(spec):
    load_text(spec.read_text(), str(spec))


def _language_examples():
    text = LANGUAGE_MD.read_text().split("## 9.")[1]
    blocks = re.findall(r"```\n(.*?)```", text, re.S)
    return [b for b in blocks if b.lstrip().startswith("model ")]


@pytest.mark.skipif(not LANGUAGE_MD.exists(), reason="shared/LANGUAGE.md not beside the repo")
def test_language_md_examples_are_all_in_the_gallery_and_check():
    examples = _language_examples()
    assert len(examples) == 4
    names = {p.stem for p in SPECS}
    for block in examples:
        name = block.split()[1]
        assert name in names, f"LANGUAGE.md example '{name}' is not in specs/"
        load_text(block, f"{name}.bp")


def test_section_statement_from_language_md_skeleton_parses():
    # The file-structure listing of LANGUAGE.md §2 (with names made consistent).
    parse("""model NAME
dtype float64
let D = 6
input  x : [N, 784]
input  tax = 1.1
target t : [N, 10]
param  W1 : [784, 50] = he
a1 = x @ W1 + b1
output y = softmax(a2)
loss   L = mean((y - t)^2)
grad wrt x, W1
optimizer sgd(lr=0.1)
train { epochs = 10; batch = 100; seed = 0 }
data "path/to/data.npz"
""", "skeleton.bp")


def test_errors_are_spec_errors_with_locations():
    with pytest.raises(SpecError) as info:
        load_text("input x : scalar\nloss L = y\n", "u.bp")
    d = info.value.diagnostics[0]
    assert (d.span.line, d.span.col) == (2, 10)
    assert "unknown name 'y'" in d.message


def test_index_spans_point_at_each_subscript():
    e = expr("x[:, 1:3, -1]")
    assert (e.span.col, e.span.end_col) == (5, 18)
    assert [(i.span.col, i.span.end_col) for i in e.items] == [(7, 8), (10, 13), (15, 17)]


@pytest.mark.parametrize("text, message", [
    ("x[]", "empty brackets after a value"),
    ("x[1:2:3:4]", "unexpected ':'"),
    ("x[1;2]", "unexpected ';'"),
    ("x[,1]", "a subscript is missing before ','"),
    ("x[1 2]", "separate subscripts with ','"),
    ("x[1", "unclosed '['"),
])
def test_index_syntax_errors(text, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse(f"v = {text}\n", "e.bp")


# ----------------------------------------------------------------------------- state
def test_state_declarations_parse():
    spec = parse("""let C = 3
state m : [C] = zeros
state v : [3] = constant(value=2); state k : [2] = [0.5, 1]
state s : [1] = 0.25
""", "s.bp")
    states = [s for s in spec.statements if isinstance(s, ast.State)]
    assert [s.name for s in states] == ["m", "v", "k", "s"]
    assert [d.value for d in states[0].shape.dims] == ["C"]
    assert states[0].init.id == "zeros" and states[1].init.func == "constant"
    assert isinstance(states[2].init, ast.Matrix) and states[3].init.value == 0.25
    assert (states[1].name_span.line, states[1].name_span.col) == (3, 7)


@pytest.mark.parametrize("text", [
    "state = x * 2\n",            # an equation defining 'state'
    "y = state * 2\n",            # a use
    "y = f(state)\n",             # an argument
    "state=x\n",                  # no spaces
    "grad wrt state\n",           # not at a statement's start
    "output state\n",
    "y = 1; state = y\n",         # after ';' it starts a statement, but '=' follows
])
def test_state_stays_a_name_where_no_name_follows_it(text):
    spec = parse(text, "n.bp")
    assert not any(isinstance(s, ast.State) for s in spec.statements)
    assert "state" in text


def test_state_keyword_only_before_a_name_at_a_statement_start():
    spec = parse("y = 1\nstate m : [2] = ones\nlayers x -> h { dense 2 }\n", "k.bp")
    assert [type(s).__name__ for s in spec.statements] == ["Equation", "State", "Layers"]


@pytest.mark.parametrize("text, message", [
    ("state m = 0\n", "expected ':' and a shape (a state always has one) after 'state m'"),
    ("state m : [3]\n", "missing initializer: a 'state' needs '= INIT' after its shape"),
    ("state m : [3] =\n", "expected a value after '='"),
])
def test_state_syntax_errors(text, message):
    with pytest.raises(SpecError) as info:
        parse(text, "e.bp")
    rendered = info.value.render()
    assert rendered.startswith("e.bp:1:") and message in rendered, rendered


def test_a_byte_order_mark_is_not_part_of_the_spec(tmp_path):
    """Editors on Windows save UTF-8 with a byte-order mark: the spec compiles, and an
    error's line and column are those the user sees."""
    from bpc.compiler.frontend.load import load_file

    text = (REPO / "specs" / "xor.bp").read_text()
    path = tmp_path / "xor.bp"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert load_file(path).statements == load_text(text, str(path)).statements
    assert load_text("\ufeff" + text, "cell").statements == load_text(text, "cell").statements
    path.write_bytes(b"\xef\xbb\xbfmodel m\ninput x : [N, 2]\ny = x @ W\nloss L = sum(y)\n")
    with pytest.raises(SpecError) as e:
        load_file(path)
    assert f"{path}:3:9: error:" in e.value.render()

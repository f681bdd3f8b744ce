"""A corpus of hostile specs: compiling and importing them runs nothing but the math.

Each spec in tests/hostile/ is either rejected with a SpecError, or compiles to a module
whose syntax tree holds only the contract's shapes: one numpy import, assignments of
literal data, and functions whose calls go to NumPy, the module's own helpers and a few
builtins. Importing and running it under an audit hook records no process, no network,
no file opened and no dynamic code.
"""

import ast as pyast
import subprocess
import sys
from pathlib import Path

import pytest

from bpc.compiler.errors import SpecError
from bpc.compiler.pipeline import compile_file

HOSTILE = Path(__file__).resolve().parents[1] / "hostile"  # the corpus, in tests/hostile/
CORPUS = sorted(HOSTILE.glob("*.bp"))
MUST_REJECT = {"dunder_name", "builtin_name", "keyword_model", "np_name", "params_name",
               "infinite_number", "infinite_let", 'evil"name'}
ALLOWED_CALLS = {"float", "dict", "tuple", "DTYPE"}  # DTYPE is checked: np.float64 or np.float32
ALLOWED_ATTRS = {"T", "shape", "size", "normal", "uniform", "astype"}


def _check_tree(source: str) -> None:
    tree = pyast.parse(source)
    helpers = {f.name for f in tree.body if isinstance(f, pyast.FunctionDef)
               and f.name.startswith("_")}
    for stmt in tree.body:
        if isinstance(stmt, pyast.Expr):
            assert isinstance(stmt.value, pyast.Constant) and stmt is tree.body[0], "docstring"
        elif isinstance(stmt, pyast.Import):
            assert pyast.unparse(stmt) == "import numpy as np"
        elif isinstance(stmt, pyast.Assign):
            target = stmt.targets[0].id
            if target == "DTYPE":
                assert pyast.unparse(stmt.value) in ("np.float64", "np.float32")
            else:
                pyast.literal_eval(stmt.value)  # data only
        else:
            assert isinstance(stmt, pyast.FunctionDef), pyast.dump(stmt)[:80]
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Call):
            f = node.func
            if isinstance(f, pyast.Attribute):
                base = pyast.unparse(f.value)
                ok = base == "np" or base == "rng" or f.attr in ALLOWED_ATTRS
                assert ok, pyast.unparse(node)
            else:
                assert isinstance(f, pyast.Name) and (f.id in ALLOWED_CALLS or f.id in helpers), \
                    pyast.unparse(node)
        if isinstance(node, pyast.Attribute) and isinstance(node.value, pyast.Name) \
                and node.value.id != "np":
            assert node.attr in ALLOWED_ATTRS or node.value.id in ("rng",), pyast.unparse(node)
        assert not isinstance(node, (pyast.Lambda, pyast.Global, pyast.Nonlocal))


AUDITED_RUN = r"""
import os, sys, numpy as np, importlib.util
events = []
roots = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                            os.path.dirname(np.__file__)})
def hook(event, args):
    # NumPy may import and read its own (or stdlib) modules lazily; anything else counts.
    if event == "import":
        top = args[0].split(".")[0]
        if top == "numpy" or top in sys.stdlib_module_names:
            return
    elif event == "open":
        path, mode = args[0], args[1] or "r"
        if isinstance(path, str) and os.path.realpath(path).startswith(roots)                 and not any(c in str(mode) for c in "wax+"):
            return
    elif event in ("compile", "exec", "os.listdir", "os.scandir", "sys._getframe",
                   "object.__getattr__", "object.__setattr__", "marshal.loads"):
        return  # how importlib loads a module from the interpreter's own files
    elif not (event.startswith(("os.", "subprocess.", "socket.", "ctypes.", "shutil.",
                                "urllib.", "http."))):
        return
    events.append(f"{event} {args!r:.80}")
spec = importlib.util.spec_from_file_location("hostile", sys.argv[1])
module = importlib.util.module_from_spec(spec)
code = compile(open(sys.argv[1]).read(), sys.argv[1], "exec")
sys.addaudithook(hook)
exec(code, module.__dict__)
params = module.init_params(np.random.default_rng(0))
data = {k: np.ones(tuple(2 if isinstance(d, str) else d for d in s))
        for k, s in {**module.INPUTS, **module.TARGETS}.items()}
module.loss_and_grad(params, **data)
module.predict(params, **{k: v for k, v in data.items() if k in module.INPUTS})
print("EVENTS", sorted(set(e for e in events if e != "exec")))
"""


def _code_outside_strings(source: str) -> str:
    """The module's tokens other than string literals and comments."""
    import io
    import tokenize

    return " ".join(t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                    if t.type not in (tokenize.STRING, tokenize.COMMENT))


@pytest.mark.parametrize("spec", CORPUS, ids=[p.stem for p in CORPUS])
def test_hostile_spec(spec, tmp_path):
    try:
        name, source = compile_file(spec)
    except SpecError as e:
        assert spec.stem in MUST_REJECT, e.render()
        assert "Traceback" not in e.render()
        return
    assert spec.stem not in MUST_REJECT, f"{spec.name} should have been rejected"
    _check_tree(source)
    assert "pwned" not in _code_outside_strings(source)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    r = subprocess.run([sys.executable, "-c", AUDITED_RUN, str(path)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "EVENTS []" in r.stdout, r.stdout


def test_data_paths_stay_data():
    name, source = compile_file(HOSTILE / "data_string_code.bp")
    ns = {}
    exec(compile(source, "m", "exec"), ns)  # noqa: S102 - audited above
    assert ns["CONFIG"]["data"]["path"].startswith('x.npz"); __import__(')

"""What a printed statement reads and calls, known from structure, is what its text says.

The printer records, for each node it prints, the names its text reads and the module
helpers it calls (ops declare the arguments their printed form leaves out and the helpers
it calls); buffer liveness, the parameters a function reads, the ``let`` constants and
the helpers a module defines are decided from that record. Here it is checked against a
scan of the printed text for every gallery spec and for random specs, in both styles:
statement by statement, and function by function.
"""

import re

import pytest

from bpc.compiler.backend import body as body_module
from bpc.compiler.backend import codegen
from bpc.compiler.compilation import Compilation
from bpc.compiler.ir.primitives import HELPERS
from conftest import SPECS
from random_specs import spec_from_seed

STYLES = ("fast", "textbook")
_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_STRING = re.compile(r""""[^"\n]*"|'[^'\n]*'""")


def mentioned(code: str) -> list[str]:
    """The names printed code uses as themselves (not attributes such as ``np.exp`` or
    ``x.T``, nor words of a string such as a loop's "a loop over time needs a step"): the
    text scan the compiler no longer makes, kept here as the check."""
    return _NAME.findall(_STRING.sub('""', code))

RANDOM_SEEDS = range(100)


def _checked(text: str, style: str) -> None:
    """Compile ``text`` in ``style``, comparing every statement's and every function's
    recorded reads and helpers with what its text mentions."""
    planned, functions, lets = [], [], []
    plan, helpers_of, lets_used = body_module.plan, codegen._helpers_of, codegen._lets_used

    def plan_spy(statements, *args, **kwargs):
        steps = plan(statements, *args, **kwargs)
        planned.append((statements, steps))
        return steps

    def helpers_spy(fns):
        functions.extend(fns)
        return helpers_of(fns)

    def lets_spy(prog, fns):
        lets.append(prog)
        return lets_used(prog, fns)

    mp = pytest.MonkeyPatch()
    mp.setattr(body_module, "plan", plan_spy)
    mp.setattr(codegen, "_helpers_of", helpers_spy)
    mp.setattr(codegen, "_lets_used", lets_spy)
    try:
        compilation = Compilation.from_text(text, style=style)
        compilation.text
    finally:
        mp.undo()
    programs = [compilation.program, compilation.inference or compilation.program]
    known = {bd.name for prog in programs for bd in prog.all_bindings()}
    known |= {name for prog in programs for name in prog.lets}
    assert planned
    for statements, steps in planned:
        names = known | {n for st in statements for n in (st.name, *st.defines)}
        for st, step in zip(statements, steps, strict=True):
            written = "\n".join(st.lines) or st.expr  # a loop's: its lines
            assert st.reads == set(mentioned(written)) & names - set(st.defines), written
            assert st.helpers == set(mentioned(written)) & HELPERS.keys(), written
            code = "\n".join(step.code)
            assert step.helpers == set(mentioned(code)) & HELPERS.keys(), code
    assert functions
    for fn in functions:  # comments quote the spec's lines, lets and all: not reads
        code = "\n".join(line.split("#", 1)[0] for line in fn.body)
        assert fn.facts.helpers == set(mentioned(code)) & HELPERS.keys(), fn.name
        for prog in lets:
            assert fn.facts.reads & prog.lets.keys() == set(mentioned(code)) & prog.lets.keys()


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_gallery_reads_are_what_its_text_mentions(spec, style):
    _checked(spec.read_text(), style)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("modes", [False, True])
def test_random_specs_reads_are_what_their_text_mentions(modes, style):
    for seed in RANDOM_SEEDS:
        _checked(spec_from_seed(seed, modes=modes).text(), style)

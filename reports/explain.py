"""``bpc explain SPEC -o report.html``: the derivation of one spec as one HTML page.

The page is self-contained (styles, the script and every picture inline; it loads
nothing), so a teacher can hand it out as a file. Sections, in order:

1. the model summary: every input, parameter and equation with its shape, and the
   parameter counts (like Keras' ``summary()``);
2. the spec and the textbook-style generated code side by side, highlighted by Pygments
   (the spec with ``bpc.compiler.frontend.lexer.BpLexer``); selecting a spec line highlights the
   forward and backward lines it produced, selecting a code line the spec line it came
   from (the compilation's source map, ``Compilation.spec_lines``);
3. the computational graph (``graph.to_svg``, laid out by bpc) with the value above and
   the gradient below every edge at the chosen point;
4. the worked example (``trace``), every number checked against the generated module;
5. the gradient check of the generated module against finite differences;
6. per-layer activation and gradient statistics at initialization with histograms (the
   figures of "Deep Learning from Scratch" ch. 6, from ``stats.layer_values``).

The spec's warnings (it compiles, but probably does not mean what it says: a window that
leaves pixels out, a state no batch norm uses) are printed to standard error as ``bpc
check`` prints them and shown in a box at the top of the page, located, as written.

A model with state (batch norm) is shown in training mode, as ``loss_and_grad`` runs:
states are listed (not counted as parameters) and drawn in their own colour, the worked
example is on a small batch and shows the running statistics' update, the gradient check
holds a copy of ``init_state()`` fixed, and the statistics normalize with the batch's.

Spec text reaches the page only through ``html.escape`` or Pygments (which escapes).
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import numpy as np

from ..compiler.ir import Program

from .trace import fmt, summarize

esc = html.escape

CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0 2em 3em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
table.t { border-collapse: collapse; font-size: 13px; }
table.t td, table.t th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
table.t th { background: #f3f3f3; } td.num { text-align: right; font-family: monospace; }
.side { display: flex; gap: 1em; align-items: flex-start; }
.side > div { flex: 1; min-width: 0; overflow: auto; max-height: 65vh;
              border: 1px solid #ddd; position: relative; }
.side h3 { margin: 0; padding: 4px 8px; background: #f3f3f3; font-size: 13px; }
.highlight pre { margin: 0; padding: 6px 8px; font-size: 12px; line-height: 1.35; }
.highlight pre > span[id] { display: block; cursor: pointer; }
.highlight pre > span[id]:hover { background: #f0f0ff; }
.highlight pre > span.sel { background: #ffef9e; }
.scroll { overflow-x: auto; border: 1px solid #ddd; }
code, .mono { font-family: monospace; font-size: 12px; }
.v { color: #1f3b73; } .g { color: #c0392b; } .ok { color: #1a7f37; } .bad { color: #c0392b; }
.s { color: #2e7d32; } tr.state td { background: #e2f4e0; }
.hist { display: inline-block; margin: 0 12px 12px 0; vertical-align: top; font-size: 12px; }
.note { color: #555; font-size: 13px; max-width: 60em; }
.warn { background: #fff6d6; border: 1px solid #e0c060; padding: 4px 10px; }
.warn pre { font-size: 12px; margin: 6px 0; overflow-x: auto; }
"""

SCRIPT = r"""
(function () {
  var map = JSON.parse(document.getElementById('linemap').textContent);
  function clear() {
    document.querySelectorAll('.sel').forEach(function (e) { e.classList.remove('sel'); });
  }
  function mark(id) { var e = document.getElementById(id); if (e) e.classList.add('sel'); }
  function selectSpec(n) {
    clear(); mark('spec-' + n);
    (map.spec[n] || []).forEach(function (c) { mark('code-' + c); });
    var lines = map.spec[n] || [];
    var inner = lines.filter(function (c) { return c >= map.focus; });
    if (!inner.length) inner = lines;
    if (inner.length) show(inner[0], inner[inner.length - 1]);
  }
  function show(first, last) {  // scroll the code panel only (never the page) to center
    var a = document.getElementById('code-' + first);
    var b = document.getElementById('code-' + (last || first));
    var panel = document.getElementById('code-panel');
    if (!a || !b || !panel) return;
    var end = b.offsetTop + b.offsetHeight + 30;  // its last line in view, its first too if both fit
    panel.scrollTop = Math.max(0, Math.min(a.offsetTop - 30, end - panel.clientHeight));
  }
  document.querySelectorAll('[id^="spec-"]').forEach(function (e) {
    e.addEventListener('click', function () { selectSpec(e.id.slice(5)); });
  });
  document.querySelectorAll('[id^="code-"]').forEach(function (e) {
    e.addEventListener('click', function () {
      var s = map.code[e.id.slice(5)];
      if (s) { selectSpec(s); } else { clear(); mark(e.id); }
    });
  });
  var m = /[?&]spec=(\d+)/.exec(window.location.search);  // page.html?spec=N: one line
  if (m) { selectSpec(m[1]); } else { show(map.focus); }
  document.body.setAttribute('data-ready', Object.keys(map.spec).length);
})();
"""


def _shape(shape) -> str:
    return "scalar" if not shape else "[" + ", ".join(map(str, shape)) + "]"


def _count(shape) -> int:
    return int(np.prod([d for d in shape if not isinstance(d, str)] or [1]))


def summary_rows(prog: Program) -> tuple[list[tuple], int]:
    """(kind, name, shape, parameters, how) per leaf and equation; total parameters.
    States are listed after the parameters, not counted (they are not trained); a
    function's named steps (batch norm's) are listed as steps of their equation."""
    from ..compiler.ir.inits import formula

    from .graph import steps

    rows, total = [], 0
    for bd in prog.inputs + prog.targets:
        rows.append((bd.kind, bd.name, _shape(bd.node.shape), "",
                     "default " + summarize(prog.defaults[bd.name])
                     if bd.name in prog.defaults else ""))
    for bd in prog.params:
        n = _count(bd.node.shape)
        total += n
        rows.append(("param", bd.name, _shape(bd.node.shape), n,
                     formula(prog.inits[bd.name], bd.node.shape, prog.dtype)[1]))
    updated_by = {u.name: u.sources[0] for u in prog.updates if u.sources}
    for bd in prog.states:
        how = formula(prog.inits[bd.name], bd.node.shape, prog.dtype)[1]
        if bd.name in updated_by:
            how += f"; not trained: {updated_by[bd.name]} updates it in training mode"
        rows.append(("state", bd.name, _shape(bd.node.shape), "", how))
    folded = steps(prog)
    for bd in prog.forward:
        if bd.name in folded:
            rows.append(("step", bd.name, _shape(bd.node.shape), "",
                         f"a step of {folded[bd.name]} (training mode)"))
        else:
            rows.append((bd.kind, bd.name, _shape(bd.node.shape), "", ""))
    return rows, total


def histogram_svg(values: np.ndarray, colour: str, title: str, bins: int = 30) -> str:
    a = np.asarray(values, dtype=float).ravel()
    a = a[np.isfinite(a)]
    w, h = 220, 90
    head = f'<div class="hist"><div>{esc(title)}</div>'
    if a.size == 0:
        return head + "<div>no finite values</div></div>"
    lo, hi = float(a.min()), float(a.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, _ = np.histogram(a, bins=bins, range=(lo, hi))
    top = max(int(counts.max()), 1)
    bw = w / bins
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{h - c / top * h:.1f}" width="{bw - 1:.1f}" '
        f'height="{c / top * h:.1f}" fill="{colour}"/>' for i, c in enumerate(counts) if c)
    return (head + f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 14}" '
            f'font-size="10" font-family="Helvetica, Arial, sans-serif">'
            f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fafafa" stroke="#ddd"/>'
            f'{bars}<text x="0" y="{h + 11}">{esc(fmt(lo, 3))}</text>'
            f'<text x="{w}" y="{h + 11}" text-anchor="end">{esc(fmt(hi, 3))}</text></svg>'
            f'<div class="mono">mean {esc(fmt(a.mean(), 3))}, std {esc(fmt(a.std(), 3))}'
            f'</div></div>')


def time_norms_svg(name: str, whole: list[float], last: list[float], loss: str) -> str:
    """``||dL/dh_t||`` over t = 0 .. T-1 on a log scale: of the whole loss (light) and of
    the last step's loss carried back (dark), the vanishing gradient as a picture."""
    w, h = 220, 90
    head = f'<div class="hist"><div>gradient norm per step ||d{esc(loss)}/d{esc(name)}_t||</div>'
    logs = np.log10([v for v in whole + last if v > 0] or [1.0])
    lo, hi = float(logs.min()), float(logs.max())
    lo, hi = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)

    def line(norms, colour):
        step = w / max(len(norms) - 1, 1)
        points = " ".join(f"{t * step:.1f},{h - 4 - (np.log10(v) - lo) / (hi - lo) * (h - 8):.1f}"
                          for t, v in enumerate(norms) if v > 0)
        return f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
    return (head + f'<svg xmlns="http://www.w3.org/2000/svg" class="time-norms" width="{w}" '
            f'height="{h + 14}" font-size="10" font-family="Helvetica, Arial, sans-serif">'
            f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fafafa" stroke="#ddd"/>'
            f'{line(whole, "#e8a39b")}{line(last, "#c0392b")}'
            f'<text x="0" y="{h + 11}">t = 0</text><text x="{w}" y="{h + 11}" '
            f'text-anchor="end">t = {len(whole) - 1}</text></svg>'
            f'<div class="mono">log scale, {esc(fmt(10 ** lo, 3))} to {esc(fmt(10 ** hi, 3))}'
            f'; dark: the last step\'s loss alone</div></div>')


def _table(header, rows, numeric=(), classes=None) -> str:
    out = ['<table class="t"><tr>' + "".join(f"<th>{esc(str(h))}</th>" for h in header)
           + "</tr>"]
    for k, row in enumerate(rows):
        cls = classes[k] if classes else ""
        out.append((f'<tr class="{cls}">' if cls else "<tr>") + "".join(
            f'<td class="num">{esc(str(c))}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def report(spec: str | Path, at: dict | None = None, row: int | None = None,
           seed: int = 0, batch: int = 100) -> str:
    """The whole page, as text."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    from ..compiler.compilation import Compilation
    from ..compiler.frontend.lexer import BpLexer
    from ..runtime.gradcheck import gradcheck
    from .graph import build, to_svg
    from .stats import layer_values, time_grad_norms
    from .trace import point, trace

    spec = Path(spec)
    warnings: list[str] = []
    textbook = Compilation.from_file(spec, style="textbook",
                                     warn=lambda text: _keep(text, warnings))
    prog, code = textbook.program, textbook.text  # the module as compiled
    feeds, params, where = point(textbook, at, row, seed)
    tr = trace(textbook, feeds, params, where, step=True)
    graph = build(textbook, feeds, params)

    rows, total = summary_rows(prog)
    spec_text = textbook.spec.source
    fmt_spec = HtmlFormatter(linespans="spec", cssclass="highlight")
    fmt_code = HtmlFormatter(linespans="code", cssclass="highlight")
    spec_html = highlight(spec_text, BpLexer(), fmt_spec)
    code_html = highlight(code, PythonLexer(), fmt_code)
    mapping = textbook.spec_lines
    by_spec: dict[int, list[int]] = {}
    for c, s in sorted(mapping.items()):
        by_spec.setdefault(s, []).append(c)
    focus = textbook.generated.starts.get("loss_and_grad", 1)
    linemap = json.dumps({"spec": by_spec, "code": mapping, "focus": focus}
                         ).replace("<", "\\u003c")

    # training mode (batch statistics, fixed masks), each evaluation from init_state()
    check_rows = gradcheck(textbook.with_dtype("float64").module, samples=10, batch=3,
                           seed=seed,
                           modes=("training",))
    stats = list(layer_values(prog, batch, seed))
    over_time = [time_grad_norms(prog, batch, seed, last_only=last) for last in (False, True)]
    # batch norm's running statistics (the notes below are theirs; a loop's streams are
    # started from init_state() like any evaluation, and need none)
    stateful = bool({bd.name for bd in prog.states} - set(prog.config.get("streams", ())))

    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{esc(prog.name)}: the derivation</title>"
             f"<style>{CSS}{fmt_code.get_style_defs('.highlight')}</style></head><body>",
             f"<h1>{esc(prog.name)}: the derivation</h1>",
             f'<p class="sub">{esc(str(spec))}, {esc(prog.dtype)}; worked example at '
             f"{esc(where)}. Made by <code>bpc explain</code>.</p>"]
    if warnings:
        parts.append(f'<section id="warnings" class="warn"><b>{len(warnings)} warning'
                     f'{"s" if len(warnings) > 1 else ""}</b> (the spec compiles, but '
                     "check it means what it says)"
                     + "".join(f"<pre>{esc(text)}</pre>" for text in warnings)
                     + "</section>")
    parts.append('<section id="summary"><h2>1. Model summary</h2>')
    parts.append(_table(("kind", "name", "shape", "parameters", "initialization"),
                        [(esc(k), f"<code>{esc(n)}</code>", esc(s), esc(str(c)), esc(h))
                         for k, n, s, c, h in rows], numeric=(3,),
                        classes=["state" if r[0] == "state" else "" for r in rows]))
    state_note = ""
    if stateful:
        numbers = sum(_count(bd.node.shape) for bd in prog.states)
        state_note = (f'; state (not trained, <span class="s">green</span>): '
                      f'<b id="total-state">{numbers}</b> numbers, the running statistics '
                      "training mode updates and inference mode normalizes with")
    parts.append(f'<p>Total parameters: <b id="total-params">{total}</b>{state_note}</p>'
                 '</section>')
    parts.append('<section id="code"><h2>2. The spec and its derivation</h2>'
                 '<p class="note">The generated module in the textbook style: every step '
                 'is one plain assignment. Click a spec line to highlight the forward and '
                 'backward lines it produced; click a code line to find its spec line.</p>'
                 f'<div class="side"><div><h3>{esc(spec.name)}</h3>{spec_html}</div>'
                 f'<div id="code-panel"><h3>{esc(prog.name)}.py (textbook style)</h3>{code_html}'
                 '</div></div>'
                 f'<script type="application/json" id="linemap">{linemap}</script>'
                 '</section>')
    parts.append('<section id="graph"><h2>3. The computational graph</h2>'
                 f'<p class="note">At {esc(where)}: the value flowing along each edge '
                 f'<span class="v">above</span>, the gradient of {esc(prog.loss)} with '
                 f'respect to it <span class="g">below</span>; tensors of more than a few '
                 'entries as shape, norm, min and max.'
                 + (' Training mode: each batch norm is one node (its steps are in the '
                    'worked example); its <span class="s">dashed edges</span> write the '
                    'running statistics (states), an update, not a gradient.'
                    if stateful else '') + '</p>'
                 f'<div class="scroll">{to_svg(graph)}</div></section>')
    trace_rows = []
    for ln in tr.lines:  # a loop's step: 't = 3: h_t'; a note (a loop's header): no value
        step = "" if ln.step is None else f"t = {ln.step}: "
        value = "" if ln.value is None else summarize(ln.value, 6)
        trace_rows.append((esc(ln.section), f"<code>{esc(step + ln.name)}</code>",
                           f"<code>{esc(_mathy(ln.expr))}</code>",
                           f"<code>{esc(_mathy(ln.numeric or ''))}</code>",
                           f'<code class="{_colour(ln.section)}">{esc(value)}</code>'))
    parts.append('<section id="trace"><h2>4. Worked example</h2>'
                 f'<p class="note">Every value and every adjoint in derivation order at '
                 f'{esc(where)}, then one {esc(tr.optimizer)} step. The loss and every '
                 'gradient were checked against the generated module before this page '
                 'was written. The same as <code>bpc trace</code>.'
                 + (' Training mode: batch norm normalizes with this batch\'s own mean and '
                    'variance; <span class="s">name+</span> is a running statistic after '
                    'the step (from <code>init_state()</code>), as the module writes it '
                    'into <code>state</code>.' if stateful else '') + '</p>'
                 + _table(("pass", "name", "step", "with numbers", "value"), trace_rows)
                 + f'<p>{esc(prog.loss)} = <b id="loss-value">{esc(fmt(tr.loss, 10))}</b>'
                 '</p></section>')
    parts.append('<section id="gradcheck"><h2>5. Gradient check</h2>'
                 '<p class="note">The generated module (textbook style, float64) against '
                 'central finite differences at a random point, seed '
                 f'{seed}' + ('; training mode, every evaluation from the same copy of '
                              '<code>init_state()</code>' if stateful else '')
                 + '.</p>' + _table(
                     ("variable", "shape", "checked", "max abs err", "max rel err", ""),
                     [(f"<code>{esc(r.name)}</code>", esc(_shape(r.shape)), r.checked,
                       f"{r.max_abs:.2e}", f"{r.max_rel:.2e}",
                       '<span class="ok">ok</span>' if r.ok else
                       f'<span class="bad">FAIL {esc(r.why)}</span>') for r in check_rows],
                     numeric=(2, 3, 4)) + "</section>")
    hist = []
    for name, act, grad in stats:
        hist.append(f'<div><h3 class="mono">{esc(name)} {esc(_shape(act.shape))}</h3>'
                    + histogram_svg(act, "#4a78c2", "activation")
                    + (histogram_svg(grad, "#c0392b", f"gradient d{prog.loss}/d{name}")
                       if grad is not None else "")
                    + (time_norms_svg(name, over_time[0][name], over_time[1][name], prog.loss)
                       if name in over_time[0] else "") + "</div>")
    parts.append('<section id="stats"><h2>6. Activations and gradients at initialization'
                 f'</h2><p class="note">A random batch of {batch} (N(0, 1) inputs), '
                 f'parameters from their initializers, seed {seed}: how each layer\'s '
                 'values and gradients are spread (compare "Deep Learning from Scratch" '
                 'ch. 6, and <code>bpc stats</code>).'
                 + (' Batch norm in training mode: each feature normalized with this '
                    'batch\'s own mean and variance.' if stateful else '')
                 + '</p>' + "".join(hist) + "</section>")
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def _keep(text: str, warnings: list[str]) -> None:
    """A warning goes to standard error, as every command says it, and onto the page."""
    print(text, file=sys.stderr)
    warnings.append(text)


def _colour(section: str) -> str:
    """The class of a worked-example value: gradients red, state updates green."""
    return {"backward": "g", "state": "s"}.get(section, "v")


def _mathy(text: str) -> str:
    from .trace import mathy

    return mathy(text) if text else ""


__all__ = ["histogram_svg", "report", "summary_rows", "time_norms_svg"]

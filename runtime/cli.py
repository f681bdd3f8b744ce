"""The ``bpc`` command line.

Exit codes: 0 ok, 1 a check failed (spec errors, gradient check, diverged training),
2 usage. No Python traceback reaches the user unless ``--debug`` is given.
"""

from __future__ import annotations

import _signal  # the C module: imported in no time, unlike signal (enums)
import os
import sys


def _interrupted_early(signum, frame):  # pragma: no cover - timing dependent
    """Ctrl-C before ``main`` runs (while Python imports bpc): exit 130, no traceback."""
    os.write(2, b"bpc: interrupted\n")
    os._exit(130)


# Only as the command (python -m bpc.runtime.cli, or the bpc script), never in a program
# that imports bpc, and never over a handler someone else installed (or SIG_IGN).
_ARGV0 = sys.argv[0] if sys.argv else ""
if (__name__ == "__main__" or os.path.basename(_ARGV0) == "bpc"
        or _ARGV0.endswith(os.path.join("bpc", "__main__.py"))) \
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _interrupted_early)

import argparse  # noqa: E402 - after the handler, which must come first
import signal  # noqa: E402
from pathlib import Path  # noqa: E402

from ..compiler.errors import SpecError  # noqa: E402
from ..compiler.vocab import OPTIMIZER_RANGES, RUNTIME_RANGES, TRAIN_SETTINGS, Range
from ..compiler.vocab import OPTIMIZERS as OPTIMIZER_NAMES  # noqa: E402

from .errors import UserError  # noqa: E402


def number(rng: Range):
    """An argparse ``type`` that accepts what ``rng`` accepts — the spec's own range for
    the setting a flag overrides — so a bad flag is a usage error (exit 2) naming it."""
    def parse(text: str):
        try:
            value = rng.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rng.describe()}, not {text!r}") \
                from None
        problem = rng.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return rng.coerce(value)
    parse.range = rng  # lets the tests find every numeric flag
    return parse


def _train_flag(key: str):
    return number(TRAIN_SETTINGS[key].range)


def data_flag(text: str) -> str:
    """``--data``: a built-in data set's arguments checked against the spec's ranges
    (``spiral:classes=1`` is refused as ``data spiral(classes=1)`` is)."""
    from .data import data_problem, parse_data_flag

    try:
        problem = data_problem(parse_data_flag(text))
    except UserError as e:
        problem = e.message
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _cmd_check(args) -> int:
    from ..compiler.pipeline import check_file

    failed = False
    for path in args.specs:
        try:
            check_file(path)
        except SpecError as e:
            failed = True
            print(e.render(), file=sys.stderr)
            continue
        print(f"{path}: ok")
    return 1 if failed else 0


def _cmd_compile(args) -> int:
    from ..compiler.cache import write_text_atomic
    from ..compiler.pipeline import compile_file

    out = Path(args.out)
    failed = False
    written: dict[str, str] = {}
    for path in args.specs:
        try:
            name, source = compile_file(path, args.style)
        except SpecError as e:
            failed = True
            print(e.render(), file=sys.stderr)
            continue
        if name in written:
            print(f"bpc: error: {path} and {written[name]} both define model '{name}'; "
                  f"they would write the same {name}.py", file=sys.stderr)
            failed = True
            continue
        written[name] = path
        target = out / f"{name}.py"
        write_text_atomic(target, source)
        if not args.quiet:
            print(f"{path} -> {target}")
    return 1 if failed else 0


def _cmd_show(args) -> int:
    from ..compiler.pipeline import show

    text = show(args.spec, args.stage, args.style)
    color = args.color == "always" or args.color == "auto" and sys.stdout.isatty() \
        and os.environ.get("NO_COLOR", "") == "" and os.environ.get("TERM") != "dumb"
    if color:
        from pygments import highlight
        from pygments.formatters import TerminalFormatter
        from pygments.lexers import PythonLexer

        from ..compiler.frontend.lexer import BpLexer

        lexer = PythonLexer() if args.stage == "code" else BpLexer()
        text = highlight(text, lexer, TerminalFormatter())
    sys.stdout.write(text)
    return 0


def _cmd_train(args) -> int:
    from .loader import load_model
    from .history import best_row, summary_line
    from .plots import plot_fit, plot_history, plot_title
    from .train import STUCK_HINT, run

    if args.plot:  # fail before training, not after
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UserError("--plot needs matplotlib, which is not installed",
                            "install it with: python3 -m pip install 'backprop-compiler[plot]'")
    module = load_model(args.spec)
    overrides = {"epochs": args.epochs, "iters": args.iters, "batch": args.batch,
                 "lr": args.lr, "optimizer": args.optimizer, "seed": args.seed,
                 "eval_every": args.eval_every}
    if args.verbose and args.eval_every is None:
        overrides["eval_every"] = 1  # -v: a line for every epoch
    out = Path(args.out) if args.out else Path("runs") / Path(args.spec).stem
    result, settings, dataset = run(module, args.data, overrides, out, resume=args.resume,
                              quiet=args.quiet, checkpoint_every=args.checkpoint_every)
    if result.history:
        last = result.history[-1]
        total = last["epoch"]
        print(f"{Path(args.spec).stem}: " + summary_line(last, int(total)).split("  ", 1)[1]
              + f"  ({result.steps} steps, {result.seconds:.1f}s; checkpoint and history "
              f"in {out}/)")
        best = best_row(result.history)
        if best is not None and len(result.history) > 1:
            print(f"best: " + summary_line(best, int(total)).rsplit("  ", 1)[0])
    for note in result.notes:
        print(f"note: {note}")
    if result.notes:
        print(f"hint: {STUCK_HINT}")
    if args.plot and result.history:
        title = plot_title(module, settings)
        plot_history(result.history, out / "curves.png", title)
        print(f"wrote {out / 'curves.png'}")
        if plot_fit(module, result.params, dataset, out / "fit.png", title, result.state):
            print(f"wrote {out / 'fit.png'}")
    return 130 if result.interrupted else 0


def _cmd_gradcheck(args) -> int:
    from .gradcheck import format_table, gradcheck
    from .loader import load_model

    import numpy as np

    is_py = args.spec.endswith(".py")
    module = load_model(args.spec, None if is_py else "float64")
    eps, tol = args.eps, args.tol
    if np.dtype(module.DTYPE) != np.float64:
        eps, tol = max(eps, 1e-3), max(tol, 1e-2)
        print(f"note: {args.spec} computes in {np.dtype(module.DTYPE).name}; checking with "
              f"eps={eps:g}, tol={tol:g}")
    rows = gradcheck(module, eps=eps, tol=tol, samples=args.samples, seed=args.seed,
                     batch=args.batch)
    print(f"gradcheck {args.spec}: central differences, eps={eps:g}, tol={tol:g}, "
          f"{args.samples} entries per variable at most, batch {args.batch}")
    if not rows:
        print(f"FAILED: nothing to compare: {args.spec} has no gradients (no parameters and "
              "no 'grad wrt' inputs)")
        return 1
    print(format_table(rows))
    return _gradcheck_verdict(rows)


def _gradcheck_verdict(rows) -> int:
    """``ok`` only when every variable had entries compared and all of them matched."""
    mismatched = [r.label for r in rows if not r.ok and not r.why]
    unchecked = [r for r in rows if not r.ok and r.why]
    if mismatched:
        print(f"FAILED: the gradient of {', '.join(mismatched)} does not match finite "
              "differences")
    for r in unchecked:
        print(f"FAILED: {r.label} was not checked: {r.why}")
    if any("kinks" in r.why for r in unchecked):
        print("hint: try another --seed, or a larger --samples, to land on smooth points")
    if mismatched or unchecked:
        return 1
    modes = list(dict.fromkeys(r.mode for r in rows if r.mode))
    where = f" in {' and '.join(modes)} mode" if modes else ""
    print(f"ok: all {len({r.name for r in rows})} gradients match{where} "
          f"({sum(r.checked for r in rows)} entries compared)")
    return 0


def _cmd_stats(args) -> int:
    import json

    from ..compiler.pipeline import program_from_file
    from ..reports.stats import format_table, init_from_text, layer_stats, override_weights

    prog = program_from_file(args.spec)
    note = ""
    if args.init:
        changed = override_weights(prog, init_from_text(args.init))
        shown = changed if len(changed) <= 6 else changed[:3] + ["…"] + changed[-1:]
        note = (f", {len(changed)} weights ({', '.join(shown)}) drawn from {args.init}"
                if changed else ", no weights to override")
    rows = layer_stats(prog, batch=args.batch, seed=args.seed)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{prog.name}: statistics at initialization, batch {args.batch}, "
              f"seed {args.seed}{note}")
        print(format_table(rows))
    return 0


def _cmd_graph(args) -> int:
    from ..compiler.compilation import Compilation
    from ..reports.graph import build, dot, to_svg

    comp = Compilation.from_file(args.spec)  # drawn as the spec wrote it, unoptimized
    feeds = params = None
    if args.values or args.at or args.row is not None:
        feeds, params, _ = _point(args, comp)
    g = build(comp, feeds, params)
    sys.stdout.write(to_svg(g) + "\n" if args.svg else dot(g))
    return 0


def _point_args(p) -> None:
    """--at / --row / --seed: the point a worked example (trace, graph, explain) is at."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--at", metavar="NAME=VALUE,...",
                       help="values of inputs, targets or parameters, e.g. x=2.3,y=2.0 or "
                            "'x=[0.05,0.1],t=[0.01,0.99]' (others: random, from --seed)")
    where.add_argument("--row", type=number(RUNTIME_RANGES["row"]), metavar="K",
                       help="row K of the spec's data")
    p.add_argument("--seed", type=number(RUNTIME_RANGES["seed"]), default=0,
                   help="seed for random parameters and data (default 0)")


def _point(args, comp):
    from ..reports.trace import parse_at, point

    return point(comp, parse_at(args.at) if args.at else None, args.row, args.seed)


def _cmd_trace(args) -> int:
    from ..compiler.compilation import Compilation
    from ..reports.trace import format_trace, trace

    comp = Compilation.from_file(args.spec)
    feeds, params, where = _point(args, comp)
    sys.stdout.write(format_trace(trace(comp, feeds, params, where, step=args.step,
                                        digits=args.digits), args.digits))
    return 0


def _cmd_explain(args) -> int:
    from ..compiler.cache import write_text_atomic

    from ..reports.explain import report
    from ..reports.trace import parse_at

    text = report(args.spec, parse_at(args.at) if args.at else None, args.row, args.seed,
                  batch=args.batch)
    out = Path(args.out) if args.out else Path(Path(args.spec).stem + ".html")
    write_text_atomic(out, text)
    print(f"{args.spec} -> {out}")
    return 0


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("backprop-compiler")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "unknown (not installed)"


def _trained(args):
    """(module, params, state, arrays, split name, data name) for ``bpc predict`` and
    ``bpc eval``: the model, the checkpoint's parameters and state (refused if of another
    model, the state verified against the model's STATE) and the examples."""
    from .data import conform, load
    from .loader import load_model
    from .points import check_memory
    from .checkpoint import checkpoint_params

    module = load_model(args.spec)
    check_memory(module, 1, "a prediction", "", forward_only=True)  # before any data
    params, state = checkpoint_params(Path(args.checkpoint), module, with_state=True)
    config = getattr(module, "CONFIG", {}) or {}
    seed = ((config.get("train") or {}).get("seed") or 0)
    dataset = load(args.data if args.data else config.get("data"), module, seed)
    split = args.split or ("test" if dataset.test else "train")
    arrays = dataset.test if split == "test" else dataset.train
    if not arrays:
        raise UserError(f"{dataset.name} has no {split} split", "use --split train")
    return module, params, state, conform(arrays, module, f"{split} data ({dataset.name})"), \
        split, dataset.name


def _cmd_predict(args) -> int:
    import numpy as np

    from .data import batch_axes, example_count
    from .points import eval_chunk
    from .evaluate import output_batch_axis, predict_all

    module, params, state, arrays, split, name = _trained(args)
    inputs = {k: v for k, v in arrays.items() if k in module.INPUTS}
    with np.errstate(all="ignore"):  # inference mode, with the checkpoint's state
        out = np.asarray(predict_all(module, params, inputs, eval_chunk(module), state))
    n = example_count(inputs, batch_axes(module))
    axis = output_batch_axis(module)
    rows = np.moveaxis(out, axis, 0).reshape(n, -1) if axis is not None and out.ndim \
        and out.shape[axis] == n else out.reshape(1, -1)
    header = [f"{getattr(module, 'OUTPUT', 'y')}" + (f"[{j}]" if rows.shape[1] > 1 else "")
              for j in range(rows.shape[1])]
    # Small inputs (8 numbers an example at most) lead each row: which example is which.
    axes = batch_axes(module)
    shown = []
    for k, v in inputs.items():
        v = np.asarray(v)
        if k in axes and v.size // max(n, 1) <= 8 and rows.shape[0] == n:
            cols = np.moveaxis(v, axes[k], 0).reshape(n, -1)
            header = [k + (f"[{j}]" if cols.shape[1] > 1 else "")
                      for j in range(cols.shape[1])] + header if not shown else \
                header[:len(shown)] + [k + (f"[{j}]" if cols.shape[1] > 1 else "")
                                       for j in range(cols.shape[1])] + header[len(shown):]
            shown.append(cols)
    if shown:
        rows = np.concatenate(shown + [rows], axis=1)
    lines = [",".join(header)] + [",".join(f"{v:.8g}" for v in r) for r in rows]
    text = "\n".join(lines) + "\n"
    if args.out:
        from ..compiler.cache import write_text_atomic

        write_text_atomic(Path(args.out), text)
        print(f"{rows.shape[0]} predictions on the {split} split of {name} -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_eval(args) -> int:
    import numpy as np

    from .data import batch_axes, example_count
    from .points import eval_chunk
    from .evaluate import accuracy, mean_loss, no_accuracy_note, task_kind

    module, params, state, arrays, split, name = _trained(args)
    chunk = eval_chunk(module)  # examples per call whose forward pass fits in memory
    with np.errstate(all="ignore"):  # inference mode, with the checkpoint's state
        loss = mean_loss(module, params, arrays, chunk, state)
        acc = accuracy(module, params, arrays, task_kind(module, arrays), state, chunk)
    n = example_count(arrays, batch_axes(module))
    text = f"{args.spec}: {split} split of {name}, {n} examples: loss {loss:.6g}"
    if acc is not None:
        text += f"  accuracy {100 * acc:.2f}%"
    print(text)
    note = no_accuracy_note(module, arrays)
    if note:
        print(f"note: {note}")
    return 0


def _cmd_params(args) -> int:
    import numpy as np

    from .checkpoint import read_checkpoint_file

    c = read_checkpoint_file(Path(args.checkpoint))
    params, state, meta = c.params, c.state, c.meta
    where = f"epoch {meta.get('epoch')}, step {meta.get('step')}" if "step" in meta else ""
    total = sum(v.size for v in params.values())
    kept = (f"; {len(state)} state entries, {sum(v.size for v in state.values())} numbers "
            "(not trained)") if state else ""
    print(f"{args.checkpoint}: {len(params)} parameters, {total} numbers{kept}"
          + (f" ({where})" if where else ""))
    # State (batch norm's running statistics) after the parameters, marked: training
    # updates it, the optimizer never does, and inference reads it.
    entries = [(k, v, "") for k, v in params.items()] + \
        [(k, v, " [state, not trained]") for k, v in state.items()]
    for k, v, mark in entries:
        if v.size == 0 or v.dtype.kind not in "fiub":
            print(f"{k} {v.shape}{mark}: {v.dtype.name}, {v.size} values")
        elif v.size <= args.full:
            body = np.array2string(v, precision=6, suppress_small=True, separator=", ",
                                   max_line_width=88)
            print(f"{k} {v.shape}{mark}:"
                  + ("\n" + body if "\n" in body or v.ndim > 1 else f" {body}"))
        else:
            print(f"{k} {v.shape}{mark}: mean {v.mean():.4g}  std {v.std():.4g}  "
                  f"min {v.min():.4g}  max {v.max():.4g}  |.|_2 {np.linalg.norm(v):.4g}")
    return 0


def _cmd_plot(args) -> int:
    from .plots import plot_runs, run_history

    runs = [run_history(Path(r)) for r in args.runs]
    names = [name for name, _ in runs]
    if len(set(names)) < len(names):  # two folders of one name: say which is which
        runs = [(str(Path(r)), h) for r, (_, h) in zip(args.runs, runs)]
    out = Path(args.out)
    plot_runs(runs, out, args.title or " vs ".join(name for name, _ in runs))
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpc",
        description="The backprop compiler: .bp specs to readable NumPy forward/backward "
                    "code, and a runtime that trains and gradient-checks it.")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks for internal errors")
    parser.add_argument("--version", action="version", version=f"bpc {_version()}")
    # --debug also works after the command (bpc train spec.bp --debug).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show Python tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("check", parents=[common],
                       help="parse and type/shape-check specs; print errors or 'ok'")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(run=_cmd_check)

    p = sub.add_parser("compile", parents=[common],
                       help="compile specs to standalone NumPy modules")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("-o", "--out", default="generated", metavar="DIR",
                   help="where to write <model>.py (default: generated/)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--style", choices=["fast", "textbook"], default="fast",
                   help="fast (default): buffers reused in place and released early, "
                        "what bpc train runs; textbook: one plain assignment per step, "
                        "no out=, no in-place update, no del")
    p.set_defaults(run=_cmd_compile)

    p = sub.add_parser("train", parents=[common],
                       help="train a spec (or a generated module) on its data")
    p.add_argument("spec", metavar="SPEC", help="a .bp spec, or a module written by bpc compile")
    p.add_argument("--data", type=data_flag,
                   help="a .npz or .csv file, or a built-in data set: xor, "
                        "spiral[:n=100,classes=3], sine[:n=200], digits, mnist")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_train_flag("epochs"),
                        help="passes over the training data")
    length.add_argument("--iters", type=_train_flag("iters"),
                        help="minibatch steps (instead of --epochs)")
    p.add_argument("--batch", type=_train_flag("batch"), help="minibatch size")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZER_NAMES), help="the update rule")
    p.add_argument("--lr", type=number(OPTIMIZER_RANGES["lr"]), help="learning rate")
    p.add_argument("--seed", type=_train_flag("seed"),
                   help="seed for initialization, shuffling and data")
    p.add_argument("--out", metavar="DIR",
                   help="where checkpoint.npz, history.csv (and curves.png) go "
                        "(default: runs/<spec name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint")
    p.add_argument("--eval-every", type=_train_flag("eval_every"), metavar="K",
                   help="evaluate, record a history row and print a line every K epochs "
                        "(and at the end; default: the spec's eval_every, else as often "
                        "as costs about 5%% of the run)")
    p.add_argument("--checkpoint-every", type=number(RUNTIME_RANGES["checkpoint_every"]),
                   metavar="SECONDS",
                   help="write checkpoint.npz at most this often while training (default: "
                        "60); always at the end and on Ctrl-C")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="evaluate and print a line every epoch (unless --eval-every)")
    p.add_argument("--plot", action="store_true",
                   help="write loss/accuracy curves to DIR/curves.png (needs matplotlib)")
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("gradcheck", parents=[common],
                       help="compare the backward pass with finite differences (of a "
                       "model with dropout or batch norm: in training and inference mode)")
    p.add_argument("spec", metavar="SPEC_OR_MODULE")
    p.add_argument("--eps", type=number(RUNTIME_RANGES["eps"]), default=1e-6,
                   help="finite-difference step")
    p.add_argument("--tol", type=number(RUNTIME_RANGES["tol"]), default=1e-5,
                   help="largest relative error allowed")
    p.add_argument("--samples", type=number(RUNTIME_RANGES["samples"]), default=20,
                   metavar="K", help="entries checked per variable (all of a smaller one)")
    p.add_argument("--batch", type=number(RUNTIME_RANGES["batch"]), default=3,
                   help="examples in the random batch")
    p.add_argument("--seed", type=number(RUNTIME_RANGES["seed"]), default=0)
    p.set_defaults(run=_cmd_gradcheck)

    p = sub.add_parser("stats", parents=[common],
                       help="per-layer activation and gradient statistics at initialization")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--batch", type=number(RUNTIME_RANGES["batch"]), default=100,
                   help="examples drawn from N(0, 1)")
    p.add_argument("--init", metavar="INIT",
                   help="draw every weight (2-D parameter) from this initializer instead, "
                        "e.g. he or 'normal(std=1)'")
    p.add_argument("--seed", type=number(RUNTIME_RANGES["seed"]), default=0)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(run=_cmd_stats)

    p = sub.add_parser("graph", parents=[common],
                       help="the computation graph as Graphviz DOT (or SVG)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--values", action="store_true",
                   help="label edges with forward values (above) and gradients (below) at "
                        "one data point (implied by --at and --row)")
    _point_args(p)
    p.add_argument("--svg", action="store_true",
                   help="write SVG laid out by bpc itself (no Graphviz needed)")
    p.set_defaults(run=_cmd_graph)

    p = sub.add_parser("show", parents=[common],
                       help="print the generated code, or an IR stage, to stdout")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--stage", choices=["ast", "ir", "grad", "opt", "code"], default="code",
                   help="ast: the desugared spec; ir: forward IR with shapes; grad: with the "
                        "raw derivative; opt: simplified; code: the generated module "
                        "(default)")
    p.add_argument("--style", choices=["fast", "textbook"], default="textbook",
                   help="the code style of --stage code (default: textbook)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   nargs="?", const="always",
                   help="highlight the output (auto, the default: only on a terminal, and "
                        "not when NO_COLOR is set)")
    p.set_defaults(run=_cmd_show)

    p = sub.add_parser("trace", parents=[common],
                       help="a worked example: every value and gradient at one point, "
                            "the chain rule written out with numbers")
    p.add_argument("spec", metavar="SPEC")
    _point_args(p)
    p.add_argument("--step", action="store_true",
                   help="then the parameter update of one step of the spec's optimizer")
    p.add_argument("--digits", type=number(RUNTIME_RANGES["digits"]), default=6,
                   metavar="D", help="significant digits (3 to 17, default 6)")
    p.set_defaults(run=_cmd_trace)

    p = sub.add_parser("explain", parents=[common],
                       help="the derivation as one self-contained HTML page: summary, spec "
                            "and code side by side, graph, worked example, gradient check, "
                            "statistics")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--out", metavar="FILE",
                   help="where to write the page (default: <spec name>.html)")
    _point_args(p)
    p.add_argument("--batch", type=number(RUNTIME_RANGES["batch"]), default=100,
                   help="examples of the random batch of the statistics (default 100)")
    p.set_defaults(run=_cmd_explain)

    for cmd, text in (("predict", "the trained model's outputs on a data set, as CSV"),
                      ("eval", "the trained model's loss (and accuracy) on a data set")):
        p = sub.add_parser(cmd, parents=[common], help=text)
        p.add_argument("spec", metavar="SPEC_OR_MODULE")
        p.add_argument("--checkpoint", required=True, metavar="FILE",
                       help="a run's checkpoint.npz (or its folder), from bpc train; "
                            "its parameters, and the state (batch norm's running "
                            "statistics) inference reads")
        p.add_argument("--data", type=data_flag,
                       help="as for bpc train (default: the spec's data line)")
        p.add_argument("--split", choices=["train", "test"],
                       help="which part of the data (default: test when there is one)")
        if cmd == "predict":
            p.add_argument("-o", "--out", metavar="FILE",
                           help="write the CSV here (default: standard output)")
        p.set_defaults(run=_cmd_predict if cmd == "predict" else _cmd_eval)

    p = sub.add_parser("plot", parents=[common],
                       help="the learning curves of one or more runs on the same axes "
                            "(e.g. with and without batch norm)")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run's --out folder (or its history.csv or checkpoint.npz)")
    p.add_argument("-o", "--out", default="curves.png", metavar="FILE",
                   help="the image to write (default curves.png)")
    p.add_argument("--title", help="the figure's title (default: the runs' names)")
    p.set_defaults(run=_cmd_plot)

    p = sub.add_parser("params", parents=[common],
                       help="the parameters (and state) in a checkpoint: values, or shape "
                            "and summary")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--full", type=number(RUNTIME_RANGES["samples"]), default=32, metavar="K",
                   help="print all values of parameters with at most K numbers (default 32)")
    p.set_defaults(run=_cmd_params)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Other modules add subcommands here (keeps this file about the command line only).
_EXTRA_COMMANDS: list = []


_sigint_seen = False


def _interrupt(signum, frame):
    """Ctrl-C once bpc runs: KeyboardInterrupt, remembered, since a library may turn it
    into another error (NumPy's import reports an interrupted import as ImportError)."""
    global _sigint_seen
    _sigint_seen = True
    raise KeyboardInterrupt


_interrupt.raises_keyboard_interrupt = True  # training may defer it (runfolder.DeferredInterrupt)


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) is _interrupted_early:
        signal.signal(signal.SIGINT, _interrupt)  # now caught below
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while parsing the command line
        print("bpc: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SpecError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except UserError as e:
        print(f"bpc: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("bpc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (bpc show x.bp | head -1): end quietly, and let nothing
        # write to the closed pipe at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except Exception as e:  # an internal error: say so, without a traceback
        if _sigint_seen:  # Ctrl-C, reported by a library as its own error
            print("bpc: interrupted", file=sys.stderr)
            return 130
        if args.debug:
            raise
        print(f"bpc: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("hint: run again with --debug for the traceback, and please report it",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

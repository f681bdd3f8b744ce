"""The rich random-spec generator's steps over time: a sequence input (values
``[N, T, D]`` or token ids ``[N, T]``), layer stacks on it (``embedding``, ``rnn``,
``lstm``, ``gru`` over every step or the ``last``, stacked, ``init=``, ``forget_bias``;
``dense`` per step, ``layernorm``, ``attention``), loops of step equations (``h[t] = …
from 0`` or from a value computed before, one or two carried values, ``embed``) among
the other statements, and sequence loss terms (softmax cross-entropy over ``[N, T, V]``
with ``ignore=``, ``mse`` against a target ``[N, T, H]``, sums). ``SpecGen``
(spec_steps.py) takes them in as a mixin: they use its chooser ``c``, its values and its
``line``/``new_param``/``new_value``/``target``.
"""

from __future__ import annotations

N = "N"
SEQ = (N, "T")
CELLS = ("tanh({})", "sigmoid({})", "sin({})", "0.5 * ({})", "({})^2 * 0.1")


class SequenceSteps:
    # -------------------------------------------------------------------- inputs
    def sequence_input(self):
        """A sequence input: values ``xs : [N, T, D]`` or ids ``ids : [N, T]`` (one
        vocabulary for every embedding of them)."""
        c = self.c
        if c.chance(0.5):
            width = c.integers(2, 4)
            self.line(f"input xs : [N, T, {width}]")
            self.sequences.append(("xs", width))
            self.feature("input sequence")
        else:
            self.vocab = c.integers(3, 6)
            self.line("input ids : [N, T]")
            self.sequences.append(("ids", None))
            self.feature("input ids")

    # -------------------------------------------------------------------- steps
    def over_time(self, a, sa):
        """A layer stack or a loop over one of the sequences; each ``[N, T, H]`` value it
        makes may feed later ones, and a value ``[N, H]`` of it (the last step, the first,
        a pooling over time) joins the values. ``a`` (when ``[N, H]``) may start it."""
        c = self.c
        self.time_steps += 1
        src, width = c.choice(self.sequences)
        start = (a, sa[1]) if len(sa) == 2 and sa[0] == N and isinstance(sa[1], int) \
            else None
        if width is None and c.chance(0.3):
            src, width = self.embedded(src)
        if width is None or c.chance(0.5):
            name, width, every = self.time_stack(src, width, start)
        else:
            name, width, every = self.time_loop(src, width, start)
        if not every:
            self.values.append((name, (N, width)))
            return name
        self.sequences.append((name, width))
        self.seq_values.append((name, width))
        pooled = c.choice([f"{name}[:, -1]", f"{name}[:, 0]", f"mean({name}, axis=1)",
                           f"max({name}, axis=1)", f"sum({name}, axis=-2)"])
        return self.new_value(pooled, (N, width))

    def embedded(self, ids):
        """``e = embed(ids, E)`` written as an equation: ``[N, T, D]``."""
        width = self.c.integers(2, 3)
        table = self.new_param((self.vocab, width), "normal(std=0.5)")
        self.count += 1
        name = f"em{self.count}"  # not e{k}: an embedding layer's
        self.line(f"{name} = embed({ids}, {table})")
        self.feature("embed equation")
        return name, width

    def time_stack(self, src, width, start):
        """``layers src -> q{k} { … }`` with at least one recurrent layer: (name, width,
        whether it gives every step)."""
        c = self.c
        items = []
        if width is None:
            width = c.integers(2, 4)
            items.append(f"embedding {self.vocab} {width}"
                         + c.choice(["", "", " init=normal(std=0.5)"]))
            self.feature("layer embedding")
        kinds = ["rnn", "lstm", "gru", "dense", "layernorm", "attention", "tanh"]
        drawn = [c.choice(kinds) for _ in range(c.integers(1, 3))]
        if not {"rnn", "lstm", "gru"} & set(drawn):
            drawn.insert(c.integers(0, len(drawn)), c.choice(["rnn", "lstm", "gru"]))
        # An activation is named z{k} after the last weighted layer k: one first would
        # be named after a layer of another stack, one after a gru (its gate z{k}) or
        # after another activation would be named twice.
        every, acted = True, not items
        for kind in drawn:
            if not every or acted and kind == "tanh":  # after 'last': [N, H], dense only
                kind = "dense"
            acted = kind in ("tanh", "gru") or acted and kind in ("layernorm", "attention")
            item, width, steps = self._time_layer(kind, width, start)
            every = every and steps
            items.append(item)
        out = f"q{self.count + 1}"
        self.count += 1
        self.line(f"layers {src} -> {out} {{")
        for item in items:
            self.line(f"  {item}")
        self.line("}")
        return out, width, every

    def _time_layer(self, kind, width, start):
        """One layer of a stack over time: (its line, the width after it, whether it
        still gives every step)."""
        c = self.c
        self.feature(f"layer {kind}")
        if kind in ("rnn", "lstm", "gru"):
            size = start[1] if start and c.chance(0.5) else c.integers(2, 4)
            opts = ""
            if c.chance(0.25):
                opts += " last"
                self.feature("layer recurrent last")
            if start and start[1] == size and c.chance(0.7):
                opts += f" init={start[0]}"
                self.feature("layer recurrent init")
            if kind == "lstm" and c.chance(0.4):
                opts += f" forget_bias={c.choice([0, 1])}"
            return f"{kind} {size}{opts}", size, " last" not in opts
        if kind == "dense":
            size = c.integers(2, 4)
            return f"dense {size}" + c.choice(["", "", " bias=none"]), size, True
        if kind == "layernorm":
            return "layernorm" + c.choice(["", "", " eps=1e-3"]), width, True
        if kind == "attention":
            heads = c.choice([h for h in (1, 2) if width % h == 0])
            return f"attention heads={heads}" + c.choice(["", " causal"]), width, True
        return c.choice(["tanh", "sigmoid", "relu"]), width, True

    def time_loop(self, src, width, start):
        """Consecutive step equations over ``src`` (values ``[N, T, width]``): one or two
        carried values, from 0 or from ``start``, maybe a step equation before them;
        each a cell function of terms: the sequence at t through a weight, a carried
        value a step back (through a weight or not), an earlier step equation of this
        step, a value computed before the loop, a bias. (name, width, True)."""
        c = self.c
        size = start[1] if start and c.chance(0.6) else c.integers(2, 4)
        time = c.choice(["t", "t", "k"])
        carried = [f"s{self.count + 1 + j}" for j in range(c.integers(1, 2))]
        pre = [f"s{self.count + 1 + len(carried)}"] if c.chance(0.4) else []
        self.count += len(carried) + len(pre)
        names = pre + carried[::-1]
        body = []
        for k, name in enumerate(names):
            terms = [self._time_term(src, width, size, time, carried, names[:k], start,
                                     first=k == 0 and j == 0, batched=j == 0)
                     for j in range(c.integers(1, 3))]
            joined = " + ".join(terms) if c.chance(0.7) else \
                " * ".join(f"({term})" for term in terms)
            line = f"{name}[{time}] = {c.choice(CELLS).format(joined)}"
            if name in carried:
                line += " from " + (start[0] if start and start[1] == size and c.chance(0.5)
                                    else "0")
                self.feature("loop from " + ("0" if line.endswith(" 0") else "value"))
            body.append(line)
        self.feature(f"loop {len(carried)} carried")
        for line in body:
            self.line(line)
        return names[-1], size, True

    def _time_term(self, src, width, size, time, carried, now, start, first, batched):
        """A term of a step equation ``[N, size]`` (``first``: the sequence's;
        ``batched``: one that makes the step a batch ``[N, size]`` by itself)."""
        c = self.c
        kind = "seq" if first else c.choice(["seq", "prev", "prev"] + ["now"] * bool(now)
                                            + ["outer"] * bool(start and start[1] == size)
                                            + ["bias"] * (not batched))
        if kind == "seq":
            return f"{src}[:, {time}] @ {self.new_param((width, size), 'normal(std=0.5)')}"
        if kind == "prev":  # the first term fixes the width: one through a weight
            h = c.choice(carried)
            if batched or c.chance(0.6):
                return f"{h}[{time}-1] @ {self.new_param((size, size), 'normal(std=0.5)')}"
            return f"{h}[{time}-1]"
        if kind == "now":
            return f"{c.choice(now)}[{time}]"
        if kind == "outer":
            return start[0]
        return self.new_param((size,), "normal(std=0.3)")

    # -------------------------------------------------------------------- loss terms
    def sequence_loss_term(self):
        """A loss term on every step of a value over time, or None when there is none."""
        c = self.c
        if not self.seq_values:
            return None
        name, width = c.choice(self.seq_values)
        kind = c.choice(["sxe", "sxe", "mse", "sum"])
        self.feature(f"sequence loss {kind}")
        if kind == "sum":
            return f"sum(sin({name}))"
        if kind == "mse":
            return f"mse({name}, {self.target(SEQ + (width,), 'real')})"
        classes = c.integers(2, 4)
        logits = f"{name} @ {self.new_param((width, classes), 'normal(std=0.5)')}"
        labels = self.target(SEQ, "labels")
        ignore = ", ignore=0" if c.chance(0.5) else ""
        return f"softmax_cross_entropy({logits}, {labels}{ignore})"

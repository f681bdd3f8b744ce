"""The training configuration a spec states (``optimizer``, ``data``) as the plain
dicts a ``Program`` carries, defaults filled in. A mixin of the elaborator
(``elaborate._Elaborator``)."""

from __future__ import annotations

from ..frontend import ast
from ..frontend.constants import const_value
from ..vocab import optimizer_defaults


class _TrainingConfig:
    def _optimizer(self, st: ast.Optimizer) -> dict:
        settings = optimizer_defaults(st.name)
        for kw in st.kwargs:
            if kw.name == "schedule":
                settings[kw.name] = kw.value.id
            else:
                settings[kw.name] = const_value(kw.value, self.spec.constants)
        return {"name": st.name, **settings}

    def _data(self, st: ast.Data) -> dict:
        if st.path is not None:
            return {"path": st.path}
        from ..vocab import DATASETS

        sig = DATASETS[st.name]
        args = dict(sig.defaults())
        for pname, arg in zip(sig.names, st.args):
            args[pname] = const_value(arg, self.spec.constants)
        for kw in st.kwargs:
            args[kw.name] = const_value(kw.value, self.spec.constants)
        return {"name": st.name, **args}

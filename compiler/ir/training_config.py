"""The training configuration a spec states (``optimizer``, ``train``, ``data``) as the
plain dicts a ``Program`` carries, defaults filled in."""

from __future__ import annotations

from ..errors import Diagnostics
from ..frontend import ast
from ..frontend.check import setting_value
from ..frontend.constants import const_value
from ..vocab import optimizer_defaults


def optimizer_config(st: ast.Optimizer, constants: dict) -> dict:
    settings = optimizer_defaults(st.name)
    for kw in st.kwargs:
        if kw.name == "schedule":
            settings[kw.name] = kw.value.id
        else:
            settings[kw.name] = const_value(kw.value, constants)
    return {"name": st.name, **settings}


def train_config(st: ast.Train, constants: dict, diags: Diagnostics) -> dict:
    return {s.key: setting_value(s.key, s.value, constants, diags) for s in st.settings}


def data_config(st: ast.Data, constants: dict) -> dict:
    if st.path is not None:
        return {"path": st.path}
    from ..vocab import DATASETS

    sig = DATASETS[st.name]
    args = dict(sig.defaults())
    for pname, arg in zip(sig.names, st.args):
        args[pname] = const_value(arg, constants)
    for kw in st.kwargs:
        args[kw.name] = const_value(kw.value, constants)
    return {"name": st.name, **args}

"""The batch-norm specs the views are tested on (the IR evaluator, trace, stats, graph,
explain): a tiny one written by hand, the gallery's example and a deep MLP without and
with batch norm, written to a folder once per test module by the ``specs`` fixture."""

import numpy as np
import pytest

from conftest import BN_EXAMPLE

# batch norm written by hand: two features, a batch of four, numbers small enough to print
TINY = """\
# batch norm by hand (DLFS 6.3): two features
model bn_tiny
input  x : [N, 2]
target t : [N, 2]
param W : [2, 2] = [1.0, -0.5; 0.5, 2.0]
param gamma : [2] = [1.5, 0.5]
param beta : [2] = [0.1, -0.2]
state running_mean : [2] = zeros
state running_var : [2] = constant(value=2.0)
h = x @ W
y = batch_norm(h, gamma, beta, running_mean, running_var, momentum=0.8, eps=1e-5)
loss L = mse(y, t)
"""
TINY_X = np.array([[1, 2], [0, -1], [3, 0.5], [-2, 1]], dtype=float)
TINY_T = np.array([[0, 1], [1, 0], [0.5, 0.5], [1, 1]], dtype=float)
TINY_AT = "x=[[1,2],[0,-1],[3,0.5],[-2,1]],t=[[0,1],[1,0],[0.5,0.5],[1,1]]"


# DLFS ch. 6.3's experiment: a deep MLP from a poor initial scale, without and with
# batch norm after each dense layer
DEEP = """\
model {name}
input  x : [N, 64]
target t : [N, 10]
layers x -> y {{
  repeat 5 {{ dense 100 init=normal(std=0.01); {bn}relu }}
  dense 10
}}
loss L = softmax_cross_entropy(y, t)
"""


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    """name -> path of each spec, written once per test module."""
    folder = tmp_path_factory.mktemp("bn_specs")
    out = {}
    for name, text in (("bn_example", BN_EXAMPLE), ("bn_tiny", TINY),
                       ("deep", DEEP.format(name="deep", bn="")),
                       ("deep_bn", DEEP.format(name="deep_bn", bn="batchnorm; "))):
        path = folder / f"{name}.bp"
        path.write_text(text)
        out[name] = path
    return out


def trace_values(tr) -> dict:
    """name -> value of each line of a trace."""
    return {ln.name: ln.value for ln in tr.lines}

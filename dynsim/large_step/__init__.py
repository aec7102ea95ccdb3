"""The large-step system (seed 002, second abstract; shared/specs/large_step.md): gradient descent
at any stepsize on the logistic risk of a linear predictor or a two-layer near-homogeneous
network, its two phases, margins and acceleration, against gradient flow.

``activations`` (φ and its constants κ, β, α), ``datasets`` (the toy sets, random separable
data, XOR, handwritten digits, a user's ``.npz``; the hard-margin SVM), ``model`` (f, L, G, the
stable-phase threshold), ``dynamics`` (one run, its record grid and reductions; the flow),
``gd`` (:func:`gd`: a grid of stepsizes and seeds as one Dataset).
"""

from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import activation as activation
from .datasets import DATASETS as DATASETS
from .datasets import load_data as load_data
from .datasets import max_margin as max_margin
from .gd import gd as gd

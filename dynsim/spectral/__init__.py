"""The spectral system (seed 003, shared/specs/spectral.md): spectral contrastive learning on a
finite augmentation graph, trained by SGD on the minibatch estimator or by gradient descent,
against the exact population gradient flow, with the linear probe and its provable bounds.

``graph`` (the hierarchical block and ring families, a user's graph, spectra, α*, cuts, the
sparsest partition, the probe bounds, pair sampling), ``observables`` (what every record
measures), ``flow`` (the Riccati closed form and the diffrax solve of the flow), ``config``,
``finite`` (the training step), ``simulate`` (:func:`simulate`, :func:`solve`), ``figures``,
``reproduce`` (``dynsim reproduce spectral``) and ``system``, which declares :data:`SYSTEM`.

Example:
    >>> from dynsim import spectral
    >>> graph = spectral.hsbm(3, 2, 4, (0.5, 0.3, 0.15, 0.05))
    >>> [round(float(g), 6) for g in spectral.spectrum(graph)[:4]], round(spectral.alpha(graph), 6)
    ([1.0, 0.855625, 0.855625, 0.4225], 0.05)
    >>> round(spectral.minimum(graph, 3), 6)
    -2.464188
"""

from .._lazy import lazy_attributes
from .config import SpectralConfig as SpectralConfig
from .dynamics import Trajectory as Trajectory
from .dynamics import simulate as simulate
from .dynamics import solve as solve
from .graph import Graph as Graph
from .graph import alpha as alpha
from .graph import hsbm as hsbm
from .graph import load_graph as load_graph
from .graph import minimum as minimum
from .graph import probe_bounds as probe_bounds
from .graph import ring as ring
from .graph import sparsest_partition as sparsest_partition
from .graph import spectrum as spectrum

# SYSTEM on first use: declaring it imports the figures and run directories (matplotlib, xarray).
__getattr__ = lazy_attributes(__name__, {"SYSTEM": ("dynsim.spectral.system", "SYSTEM")})

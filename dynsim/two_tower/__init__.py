"""The two-tower system (seed 001, shared/SPEC.md): CLIP-style two-tower normalized linear model.

``config`` (its sections), ``data`` (the latent data model), ``model`` (towers, embeddings,
Gram matrices), ``param`` and ``gram`` (the two finite-width backends, sharing ``finite``),
``observables`` (the per-coordinate state and metrics), ``simulate`` (``dynsim.simulate``),
``reduced`` and ``ode`` (the infinite-width ODE, ``dynsim.ode``), ``compare``
(``dynsim.compare``), ``stages``, ``phase``, ``figures`` and ``reproduce`` (Figure 1), and
``system``, which declares :data:`SYSTEM` to the engine.
"""

from .._lazy import lazy_attributes

# SYSTEM on first use: declaring it imports the figures and run directories (matplotlib, xarray).
__getattr__ = lazy_attributes(__name__, {"SYSTEM": ("dynsim.two_tower.system", "SYSTEM")})

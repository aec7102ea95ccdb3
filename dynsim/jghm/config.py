"""The jghm system's configuration (shared/specs/jghm.md §7, §10): ``tree``, ``model``,
``train``, ``eval``, ``run``. The defaults are the spec's minimal CPU configuration (§10); the
paper's size is ``tree.depth = 4, branching = 3, states = 10``, ``model.architecture =
"transformer"``, ``width = 128``, ``layers = 5``, ``train.batch = 128``.

Fields are declared with the engine's rules (:func:`dynsim.engine.config.field`); rules that tie
fields together are the sections' own.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..engine import config as engine_config
from ..engine.config import SystemConfig, as_tuple, check_fields, fail, field
from .encoders import ARCHITECTURES
from .tree import Tree, tree

PRECISIONS = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class TreeConfig:
    """The JGHM (spec §4): depth L, branching m, states V, flip probability p (the sweep's
    ``run.values`` replace it), σ_f (``scale``) and the key of (Π, G) (``seed``); the text tree
    may have its own depth, branching and p (``text_*``; unset: the image tree's)."""

    name: ClassVar[str] = "tree"
    depth: int = field(3, "depth L of the trees", "integer", low=1)
    branching: int = field(2, "children m of every node", "integer", low=1)
    states: int = field(4, "states V of every node (the root label has V values)", "integer", low=2)
    flip: float = field(0.2, "flip probability p", "number", low=0, high=1)
    scale: float = field(1.0, "standard deviation sigma_f of the random softmax logits G", "number", low=0, strict=True)
    seed: int = field(42, "key of the transitions (Pi, G); the same at every p", "integer", low=0)
    text_depth: int | None = field(None, "depth of the text tree (unset: depth)", "integer", low=1, optional=True)
    text_branching: int | None = field(
        None, "branching of the text tree (unset: branching)", "integer", low=1, optional=True
    )
    text_flip: float | None = field(
        None, "flip probability of the text tree (unset: flip)", "number", low=0, high=1, optional=True
    )

    def __post_init__(self):
        check_fields(self)
        leaves = max(
            self.branching**self.depth, (self.text_branching or self.branching) ** (self.text_depth or self.depth)
        )
        if leaves > 4096:
            fail("tree.depth", self.depth, f"gives {leaves} leaves; at most 4096 are supported")

    def model(self, flip: float | None = None) -> Tree:
        """The :class:`~dynsim.jghm.tree.Tree` of this section (at flip ``flip`` when given)."""
        image_flip = self.flip if flip is None else flip
        text_flip = image_flip if self.text_flip is None or flip is not None else self.text_flip
        return tree(
            depth=(self.depth, self.text_depth or self.depth),
            branching=(self.branching, self.text_branching or self.branching),
            states=self.states,
            flip=(image_flip, text_flip),
            seed=self.seed,
            scale=self.scale,
        )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The two towers (spec §7, §10): ``mlp`` on the one-hot leaves (``width`` hidden units,
    ``layers`` linear layers) or ``transformer`` (d = ``width``, ``layers`` blocks of ``heads``-head
    attention), each into R^``out``; S = <E_im, E_tx>."""

    name: ClassVar[str] = "model"
    architecture: str = field("mlp", "tower architecture", "choice", choices=ARCHITECTURES)
    width: int = field(256, "hidden units of the MLP, or the transformer's d", "integer", low=1)
    layers: int = field(3, "linear layers of the MLP, or transformer blocks", "integer", low=1)
    heads: int = field(1, "attention heads of the transformer (must divide width)", "integer", low=1)
    out: int = field(16, "embedding dimension q", "integer", low=1)

    def __post_init__(self):
        check_fields(self)
        if self.architecture == "transformer" and self.width % self.heads:
            fail("model.heads", self.heads, f"must divide model.width = {self.width}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Online training (spec §7): ``steps`` steps of B = ``batch`` fresh pairs, the symmetric
    in-batch CLIP loss (directions summed), AdamW with a cosine schedule ``lr`` -> ``lr_final``,
    gradient-norm clipping; ``guidance`` > 0 adds the guided penalty (transformer towers)."""

    name: ClassVar[str] = "train"
    steps: int = field(3000, "training steps, each on fresh pairs", "integer", low=1)
    batch: int = field(256, "pairs per step B (the in-batch contrast size K = B)", "integer", low=2)
    lr: float = field(1e-3, "initial learning rate", "number", low=0, strict=True)
    lr_final: float = field(1e-6, "final learning rate of the cosine schedule", "number", low=0, strict=True)
    weight_decay: float = field(1e-3, "AdamW weight decay", "number", low=0)
    clip: float = field(1.0, "gradient global-norm clip", "number", low=0, strict=True)
    guidance: float = field(0.0, "weight of the guided penalty toward BP messages (0: off)", "number", low=0)
    precision: str = field("float32", "floating-point precision of the run", "choice", choices=PRECISIONS)

    def __post_init__(self):
        check_fields(self)
        if self.lr_final > self.lr:
            fail("train.lr_final", self.lr_final, f"must be <= train.lr = {self.lr}")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The fixed evaluation set of every seed (spec §10): ``pairs`` joint pairs (the CLIP risk in
    batches of ``train.batch``), ``marginal`` fresh draws per modality (the sufficiency estimator's
    N), the zero-shot prompt counts M (``prompts``, increasing), a ``probe`` × ``probe`` grid of
    pairs for the score."""

    name: ClassVar[str] = "eval"
    pairs: int = field(2048, "joint pairs of the evaluation set", "integer", low=2)
    marginal: int = field(4096, "fresh draws N of each modality for the sufficiency estimator", "integer", low=1)
    prompts: tuple[int, ...] = field((1, 4, 32, 256), "zero-shot prompt counts M per class", "integers", low=1)
    probe: int = field(16, "side of the probe grid of pairs the score is recorded on", "integer", low=1)

    def __post_init__(self):
        object.__setattr__(self, "prompts", as_tuple(self.prompts))
        check_fields(self)
        if list(self.prompts) != sorted(set(self.prompts)):
            fail("eval.prompts", list(self.prompts), "must be strictly increasing")
        if self.probe > self.pairs:
            fail("eval.probe", self.probe, f"must be <= eval.pairs = {self.pairs}")


@dataclasses.dataclass(frozen=True)
class RunConfig(engine_config.RunConfig):
    """What to run and where: the engine's fields, the flip probabilities p of a sweep
    (``values``), and the steps between records."""

    record_every: int = field(100, "training steps between records", "integer", low=1)
    out: str = field("runs/jghm", "output directory of dynsim sweep", "path")
    values: tuple[float, ...] = field(
        (0.1, 0.2, 0.3), "the flip probabilities p of dynsim sweep", "numbers", low=0, high=1
    )

    def __post_init__(self):
        object.__setattr__(self, "values", as_tuple(self.values))
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class JGHMConfig(SystemConfig):
    """A whole configuration of the jghm system.

    Example:
        >>> import dynsim
        >>> config = dynsim.load_config({"system": "jghm", "tree": {"flip": 0.3}})
        >>> config.tree.model().leaves("text"), config.model.architecture
        (8, 'mlp')
    """

    system: ClassVar[str] = "jghm"
    tree: TreeConfig = TreeConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        if self.eval.pairs < self.train.batch or self.eval.pairs % self.train.batch:
            fail("eval.pairs", self.eval.pairs, f"must be a multiple of train.batch = {self.train.batch}")
        if self.train.guidance:
            depth = max(self.tree.depth, self.tree.text_depth or self.tree.depth)
            if self.model.architecture != "transformer":
                fail("train.guidance", self.train.guidance, 'needs model.architecture = "transformer"')
            if self.model.layers < depth:
                fail("model.layers", self.model.layers, f"must be >= the tree depth {depth} for guidance")
            if self.model.width < depth * self.tree.states:
                fail(
                    "model.width",
                    self.model.width,
                    f"must be >= depth x states = {depth * self.tree.states} for guidance",
                )

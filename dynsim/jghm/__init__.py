"""The contrastive-sufficiency system (seed 002, first abstract; shared/specs/jghm.md): CLIP
pre-training on the joint generative hierarchical model, held against exact Bayes references
computed by belief propagation.

``tree`` (the model and its sampler), ``bp`` (belief propagation: root and node posteriors, the
PMI), ``bayes`` (Bayes CLIP risk, mutual information, zero-shot and sufficiency estimators),
``contrast`` (the symmetric CLIP loss).
"""

from .bayes import bayes_clip_risk as bayes_clip_risk
from .bayes import mutual_information as mutual_information
from .bp import pmi as pmi
from .bp import root_posterior as root_posterior
from .tree import sample as sample
from .tree import tree as tree

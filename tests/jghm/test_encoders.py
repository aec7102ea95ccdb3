"""The towers and the loss of the JGHM's CLIP training against independent references (spec §7,
§10): the transformer and MLP towers recomputed in NumPy from their weights, the symmetric CLIP
loss by explicit loops, the loss's gradient by central differences, and the guidance targets
and penalty from belief propagation written out by hand."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.special import erf

from dynsim.jghm import contrast
from dynsim.jghm.encoders import MLPTower, TransformerTower, embed
from dynsim.jghm.training import Problem, clip_loss, guidance_penalty, guidance_targets, towers
from dynsim.jghm.tree import sample, tree


def gelu_tanh(x):
    """GELU in its tanh form (jax.nn.gelu's default, approximate=True)."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x):
    """The exact GELU x Φ(x), to show the test tells the two apart."""
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def layer_norm(x, weight, bias, eps):
    """Over the last axis, population variance."""
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


def softmax_rows(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention(x, wq, wk, wv, wo, heads):
    """Multi-head softmax attention without biases: per head i the columns i·d_h..(i+1)·d_h of
    the projections, softmax(Q_i K_iᵀ / √d_h) V_i, the heads concatenated, then W_o."""
    q, k, v = x @ wq.T, x @ wk.T, x @ wv.T
    size = q.shape[1] // heads
    outputs = []
    for head in range(heads):
        part = slice(head * size, (head + 1) * size)
        weights = softmax_rows(q[:, part] @ k[:, part].T / math.sqrt(size))
        outputs.append(weights @ v[:, part])
    return np.concatenate(outputs, axis=1) @ wo.T


def mlp(x, layers, activation):
    """Linear layers y = W x + b with ``activation`` between them, none after the last."""
    for index, (weight, bias) in enumerate(layers):
        x = x @ weight.T + bias
        if index < len(layers) - 1:
            x = activation(x)
    return x


def transformer_arrays(model):
    """The tower's arrays as plain NumPy, by role."""
    a = lambda value: np.asarray(value, dtype=np.float64)  # noqa: E731
    blocks = []
    for block in model.blocks:
        att = block.attention
        assert att.query_proj.bias is None and att.key_proj.bias is None
        assert att.value_proj.bias is None and att.output_proj.bias is None
        blocks.append(
            {
                "ln1": (a(block.attention_norm.weight), a(block.attention_norm.bias), block.attention_norm.eps),
                "ln2": (a(block.mlp_norm.weight), a(block.mlp_norm.bias), block.mlp_norm.eps),
                "attention": tuple(
                    a(p.weight) for p in (att.query_proj, att.key_proj, att.value_proj, att.output_proj)
                ),
                "mlp": [(a(layer.weight), a(layer.bias)) for layer in block.mlp.layers],
            }
        )
    return {
        "embedding": a(model.embedding.weight),
        "position": a(model.position),
        "blocks": blocks,
        "readout": (a(model.readout.weight), a(model.readout.bias)),
        "pooling": a(model.pooling),
    }


def transformer_numpy(arrays, leaves, heads, activation=gelu_tanh):
    """(embedding (q,), hidden states [(T, d), ...]) of one sequence of leaves."""
    h = arrays["embedding"][leaves] + arrays["position"]
    hidden = []
    for block in arrays["blocks"]:
        normed = layer_norm(h, *block["ln1"])
        h = h + attention(normed, *block["attention"], heads)
        h = h + mlp(layer_norm(h, *block["ln2"]), block["mlp"], activation)
        hidden.append(h)
    weight, bias = arrays["readout"]
    return arrays["pooling"] @ (h @ weight.T + bias), hidden


def _randomize(model, key, names):
    """Replace the arrays at ``names`` (callables model -> array) by N(0, 1) draws of their shape,
    so that LayerNorm's affine terms and the pooling, which start at 1/0 and 1/T, are checked."""
    for index, where in enumerate(names):
        shape = where(model).shape
        model = eqx.tree_at(where, model, jax.random.normal(jax.random.fold_in(key, index), shape))
    return model


def test_transformer_tower_matches_numpy(key):
    heads, states, leaves_count = 2, 4, 8
    model = TransformerTower(leaves=leaves_count, states=states, dim=16, layers=2, heads=heads, out=5, key=key)
    assert model.position.dtype == jnp.float64 and model.blocks[0].attention.num_heads == heads
    np.testing.assert_array_equal(model.pooling, np.full(leaves_count, 1 / leaves_count))
    wheres = [lambda m: m.pooling]
    for i in range(2):
        wheres += [
            lambda m, i=i: m.blocks[i].attention_norm.weight,
            lambda m, i=i: m.blocks[i].attention_norm.bias,
            lambda m, i=i: m.blocks[i].mlp_norm.weight,
            lambda m, i=i: m.blocks[i].mlp_norm.bias,
        ]
    model = _randomize(model, jax.random.fold_in(key, 7), wheres)
    arrays = transformer_arrays(model)
    assert arrays["blocks"][0]["ln1"][2] == 1e-5

    batch = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (3, leaves_count), 0, states))
    out, hidden = embed(model, jnp.asarray(batch))
    assert out.shape == (3, 5) and len(hidden) == 2 and hidden[0].shape == (3, leaves_count, 16)
    for n, leaves in enumerate(batch):
        expected, expected_hidden = transformer_numpy(arrays, leaves, heads)
        np.testing.assert_allclose(np.asarray(out[n]), expected, rtol=1e-12, atol=1e-12)
        for layer in range(2):
            np.testing.assert_allclose(np.asarray(hidden[layer][n]), expected_hidden[layer], rtol=1e-12, atol=1e-12)
        # The reference discriminates: one head, or the exact (erf) GELU, gives other numbers.
        single, _ = transformer_numpy(arrays, leaves, 1)
        assert np.max(np.abs(single - np.asarray(out[n]))) > 1e-3
        exact, _ = transformer_numpy(arrays, leaves, heads, activation=gelu_erf)
        assert np.max(np.abs(exact - np.asarray(out[n]))) > 1e-8


def test_mlp_tower_matches_numpy(key):
    leaves_count, states = 6, 3
    model = MLPTower(leaves=leaves_count, states=states, width=10, layers=3, out=4, key=key)
    layers = [(np.asarray(layer.weight), np.asarray(layer.bias)) for layer in model.mlp.layers]
    assert [w.shape for w, _ in layers] == [(10, 18), (10, 10), (4, 10)]
    batch = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (4, leaves_count), 0, states))
    out, hidden = embed(model, jnp.asarray(batch))
    assert hidden == []
    for n, leaves in enumerate(batch):
        one_hot = np.zeros((leaves_count, states))
        one_hot[np.arange(leaves_count), leaves] = 1.0
        x = one_hot.reshape(-1)  # position-major: index t·V + v
        np.testing.assert_allclose(np.asarray(out[n]), mlp(x, layers, gelu_tanh), rtol=1e-12, atol=1e-12)


def test_in_batch_loss_matches_loops():
    rng = np.random.default_rng(3)
    b = 5
    scores = rng.normal(scale=2.0, size=(b, b))
    expected = np.zeros(b)
    for i in range(b):
        row = sum(math.exp(scores[i, j]) for j in range(b))
        column = sum(math.exp(scores[j, i]) for j in range(b))
        expected[i] = -math.log(math.exp(scores[i, i]) / row) - math.log(math.exp(scores[i, i]) / column)
    np.testing.assert_allclose(np.asarray(contrast.in_batch(jnp.asarray(scores))), expected, rtol=1e-13)
    # the two directions are summed: the transpose (images and texts swapped) has the same loss
    np.testing.assert_allclose(np.asarray(contrast.in_batch(jnp.asarray(scores.T))), expected, rtol=1e-13)
    constant = contrast.in_batch(jnp.full((b, b), 0.7))
    np.testing.assert_allclose(np.asarray(constant), 2 * math.log(b), rtol=1e-13)


def test_in_batch_loss_on_a_hand_computed_example():
    """One off-diagonal score of 2: it enters anchor 0's row (image direction) and anchor 1's
    column (text direction), nothing else."""
    scores = np.zeros((3, 3))
    scores[0, 1] = 2.0
    out = np.asarray(contrast.in_batch(jnp.asarray(scores)))
    row0 = math.log(2 + math.exp(2))  # anchor 0's row holds the 2
    col1 = math.log(2 + math.exp(2))  # anchor 1's column holds it
    np.testing.assert_allclose(out, [row0 + math.log(3), math.log(3) + col1, 2 * math.log(3)], rtol=1e-13)


def test_k_way_loss_matches_loops():
    rng = np.random.default_rng(4)
    n, k = 4, 6
    positive = rng.normal(size=n)
    text_negatives, image_negatives = rng.normal(size=(n, k - 1)), rng.normal(size=(n, k - 1))
    expected = np.zeros(n)
    for i in range(n):
        for negatives in (text_negatives, image_negatives):
            total = math.exp(positive[i]) + sum(math.exp(s) for s in negatives[i])
            expected[i] -= math.log(math.exp(positive[i]) / total)
    out = contrast.k_way(jnp.asarray(positive), jnp.asarray(text_negatives), jnp.asarray(image_negatives))
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-13)
    constant = contrast.k_way(jnp.full(n, -1.3), jnp.full((n, k - 1), -1.3), jnp.full((n, k - 1), -1.3))
    np.testing.assert_allclose(np.asarray(constant), 2 * math.log(k), rtol=1e-13)


def _problem(architecture, guidance):
    return Problem(
        architecture=architecture,
        width=8,
        layers=2,
        heads=2,
        out=3,
        batch=6,
        lr=1e-3,
        lr_final=1e-4,
        weight_decay=0.0,
        clip=1.0,
        guidance=guidance,
        records=(1,),
        pairs=6,
        marginal=6,
        prompts=(1,),
        probe=2,
    )


@pytest.mark.parametrize(("architecture", "guidance"), [("mlp", 0.0), ("transformer", 0.0), ("transformer", 0.5)])
def test_clip_loss_gradient_matches_central_differences(architecture, guidance, key):
    model = tree(2, 2, 3, 0.3, 0)
    problem = _problem(architecture, guidance)
    params, static = eqx.partition(towers(problem, model, key), eqx.is_array)
    image, text, _ = sample(model, jax.random.fold_in(key, 1), problem.batch)
    layers = problem.layers if guidance else 0
    targets = tuple(guidance_targets(model, x, m, layers) for x, m in ((image, "image"), (text, "text")))
    flat, unravel = ravel_pytree(params)
    assert flat.dtype == jnp.float64

    loss = jax.jit(lambda v: clip_loss(unravel(v), static, (image, text), targets, guidance)[0])
    gradient = np.asarray(jax.jit(jax.grad(loss))(flat))
    rng = np.random.default_rng(11)
    h = 1e-5
    for index in rng.choice(flat.size, size=8, replace=False):
        step = jnp.zeros_like(flat).at[index].set(h)
        difference = (float(loss(flat + step)) - float(loss(flat - step))) / (2 * h)
        np.testing.assert_allclose(gradient[index], difference, rtol=1e-6, atol=1e-10)
    assert np.count_nonzero(np.abs(gradient) > 1e-6) > flat.size // 2
    if guidance:  # the penalty is on: it changes the loss
        assert float(loss(flat)) - float(clip_loss(params, static, (image, text), targets, 0.0)[0]) > 1e-6


def _upward_by_hand(transitions, leaves):
    """Upward beliefs of a depth-2, branching-2 tree for one sequence of 4 leaves: the two
    parents' p(x_v | its leaves) (2, V) and the root's (V,), under a uniform prior on x_v."""
    states = transitions.shape[-1]
    parents = np.ones((2, states))
    for j in range(2):
        for s in range(states):
            for c in range(2):
                parents[j, s] *= transitions[1, c, s, leaves[2 * j + c]]
    root = np.ones(states)
    for s in range(states):
        for c in range(2):
            root[s] *= sum(transitions[0, c, s, t] * parents[c, t] for t in range(states))
    return parents / parents.sum(axis=1, keepdims=True), root / root.sum()


def test_guidance_targets_match_hand_written_bp():
    model = tree(2, 2, 3, 0.3, 0)
    leaves = np.array([[0, 1, 2, 0], [2, 2, 1, 0], [1, 0, 0, 2]])
    for modality in ("image", "text"):
        transitions = model.transitions[modality]
        targets = guidance_targets(model, jnp.asarray(leaves), modality, 2)
        assert len(targets) == 2 and targets[0].shape == (3, 4, 3) and targets[1].shape == (3, 4, 3)
        for n, row in enumerate(leaves):
            parents, root = _upward_by_hand(transitions, row)
            # layer 1: each parent's belief on its 2 leaves; layer 2: the root's on all 4
            np.testing.assert_allclose(np.asarray(targets[0][n]), np.repeat(parents, 2, axis=0), rtol=1e-12)
            np.testing.assert_allclose(np.asarray(targets[1][n]), np.tile(root, (4, 1)), rtol=1e-12)
        # more layers than the tree has levels: one target per level; fewer: the first ones
        assert len(guidance_targets(model, jnp.asarray(leaves), modality, 5)) == 2
        only = guidance_targets(model, jnp.asarray(leaves), modality, 1)
        assert len(only) == 1
        np.testing.assert_array_equal(np.asarray(only[0]), np.asarray(targets[0]))


def test_guidance_penalty_advances_the_channel_slice():
    model = tree(2, 2, 3, 0.3, 0)
    states = model.states
    leaves = np.array([[0, 1, 2, 0], [2, 2, 1, 0], [1, 0, 0, 2]])
    targets = [np.asarray(t) for t in guidance_targets(model, jnp.asarray(leaves), "image", 2)]
    rng = np.random.default_rng(5)
    hidden = [rng.normal(size=(3, 4, 8)) for _ in range(2)]

    def by_hand(channel_start):
        total = 0.0
        for layer, target in enumerate(targets, start=1):
            start = channel_start(layer)
            per_example = [
                sum(
                    (hidden[layer - 1][n, t, start + k] - target[n, t, k]) ** 2 for t in range(4) for k in range(states)
                )
                for n in range(3)
            ]
            total += sum(per_example) / 3
        return total

    expected = by_hand(lambda layer: (layer - 1) * states)  # layer 1: 0:V, layer 2: V:2V
    frozen = by_hand(lambda layer: 0)  # the official code's slice, which never advanced
    out = float(guidance_penalty([jnp.asarray(h) for h in hidden], [jnp.asarray(t) for t in targets]))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert abs(frozen - expected) > 1.0
    # the penalty is zero exactly where each layer's own slice equals its target
    fitted = [h.copy() for h in hidden]
    for layer, target in enumerate(targets):
        fitted[layer][..., layer * states : (layer + 1) * states] = target
    assert float(guidance_penalty([jnp.asarray(h) for h in fitted], [jnp.asarray(t) for t in targets])) == 0.0


def test_mlp_tower_has_the_configured_number_of_linear_maps():
    """``model.layers`` counts linear maps: the default 3 is 32 → 256 → 256 → 16 (spec §10)."""
    tower = MLPTower(8, 4, 256, 3, 16, key=jax.random.PRNGKey(0))
    assert [(layer.in_features, layer.out_features) for layer in tower.mlp.layers] == [(32, 256), (256, 256), (256, 16)]
    assert len(MLPTower(8, 4, 256, 1, 16, key=jax.random.PRNGKey(0)).mlp.layers) == 1

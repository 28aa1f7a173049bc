"""Weights trained elsewhere (cnnjax.weights): Keras' get_weights() order, PyTorch state dicts
and modules, Equinox models; each against what the other framework computes, written
independently (NumPy loops, jax.lax in PyTorch's own layouts, or torch itself)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from flax import nnx
from scripts import load

import cnnjax
from cnnjax import models, nn


def numpy_functional(weights, x):
    """The functional CNN in NumPy, from Keras-ordered weights (independent of cnnjax)."""
    k1, b1, k2, b2, k3, b3, kd, bd = weights
    valid = ((0, 0), (0, 0))
    relu = lambda v: np.maximum(v, 0)
    x = relu(ref.conv(x, k1, (1, 1), valid, (1, 1)) + b1)
    x = ref.maxpool(x, (2, 2), (2, 2), valid, False)
    x = relu(ref.conv(x, k2, (1, 1), valid, (1, 1)) + b2)
    x = ref.maxpool(x, (2, 2), (2, 2), valid, False)
    x = relu(ref.conv(x, k3, (1, 1), valid, (1, 1)) + b3)
    return x.reshape(x.shape[0], -1) @ kd + bd


def keras_weights(rng):
    shapes = [(3, 3, 1, 32), (32,), (3, 3, 32, 64), (64,), (3, 3, 64, 128), (128,), (1152, 10), (10,)]
    return [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]


@pytest.mark.slow
def test_keras_weights_give_the_same_logits():
    rng = np.random.default_rng(0)
    weights = keras_weights(rng)
    m = models.load_keras_weights(models.mnist_functional(rngs=nnx.Rngs(0)), weights)
    x = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m(x)), numpy_functional(weights, x), rtol=1e-4, atol=1e-4)


def test_keras_weights_errors():
    rng = np.random.default_rng(0)
    m = models.mnist_functional(rngs=nnx.Rngs(0))
    weights = keras_weights(rng)
    before = np.asarray(m.conv1.kernel[...]).copy()
    with pytest.raises(ValueError, match=re.escape("`weights` must hold 8 arrays")):
        models.load_keras_weights(m, weights[:-1])
    weights[2] = weights[2][:, :, :16]
    with pytest.raises(ValueError, match=re.escape("`weights[2]` has shape (3, 3, 16, 64) but the Conv layer's kernel has shape (3, 3, 32, 64)")):
        models.load_keras_weights(m, weights)
    np.testing.assert_array_equal(before, m.conv1.kernel[...])  # nothing half-loaded: conv1 came first


def _torch_forward(layout, state, x_nchw):
    """What PyTorch computes, written with jax.lax in its own layouts: NCHW maps, OIHW
    weights (grouped: ``feature_group_count``), ``x @ W.T + b``, channels-first flattening,
    its adaptive average pool and local response normalisation (NumPy loops)."""
    x = jnp.asarray(x_nchw, jnp.float32)
    for op, *args in layout:
        if op == "conv":
            name, stride, pad, *groups = args
            x = jax.lax.conv_general_dilated(x, jnp.asarray(state[f"{name}.weight"], jnp.float32), (stride,) * 2,
                                             [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                             feature_group_count=groups[0] if groups else 1)
            x = x + jnp.asarray(state[f"{name}.bias"], jnp.float32)[None, :, None, None]
        elif op == "relu":
            x = jnp.maximum(x, 0)
        elif op == "maxpool":
            k, s = args
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, s, s), "VALID")
        elif op == "lrn":  # the NumPy loop, on the channel axis moved last
            x = jnp.moveaxis(jnp.asarray(ref.local_response_norm(np.moveaxis(np.asarray(x), 1, -1), *args),
                                         jnp.float32), -1, 1)
        elif op == "adaptive":
            x = jnp.moveaxis(jnp.asarray(ref.adaptive_pool(jnp.moveaxis(x, 1, -1), (args[0],) * 2, np.mean)), -1, 1)
        elif op == "flatten":
            x = x.reshape(x.shape[0], -1)  # (C, H, W) order
        else:
            x = x @ jnp.asarray(state[f"{args[0]}.weight"], jnp.float32).T + jnp.asarray(state[f"{args[0]}.bias"])
    return np.asarray(x)


def _random_state(layout, shapes, rng):
    state = {}
    for (_op, *args), shape in zip([o for o in layout if o[0] in ("conv", "linear")], shapes, strict=True):
        fan_in = int(np.prod(shape[1:]))
        state[f"{args[0]}.weight"] = (rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32)
        state[f"{args[0]}.bias"] = rng.normal(size=shape[0]).astype(np.float32) * 0.1
    return state


@pytest.mark.slow
def test_pytorch_weights_give_pytorchs_logits():
    """A PyTorch-style network (conv, pool, conv, flatten, two linear layers; weights OIHW and
    (out, in), flattening channels first) against the same network in cnnjax, channels last."""
    layout = [("conv", "features.0", 1, 1), ("relu",), ("maxpool", 2, 2), ("conv", "features.3", 2, 0), ("relu",),
              ("flatten",), ("linear", "classifier.0"), ("relu",), ("linear", "classifier.2")]
    state = _random_state(layout, [(6, 3, 3, 3), (5, 6, 3, 3), (7, 5 * 3 * 3), (4, 7)], np.random.default_rng(0))
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.Conv(3, 6, 3, padding=1, activation="relu", rngs=rngs), nn.MaxPool(2),
                          nn.Conv(6, 5, 3, stride=2, activation="relu", rngs=rngs), nn.Flatten(),
                          nn.Dense(45, 7, activation="relu", rngs=rngs), nn.Dense(7, 4, rngs=rngs))
    x = np.random.default_rng(1).normal(size=(2, 3, 14, 14)).astype(np.float32)  # NCHW, as PyTorch takes it
    assert models.load_torch_weights(model, state, input_shape=(14, 14, 3)) is model
    np.testing.assert_allclose(model(jnp.moveaxis(x, 1, -1)), _torch_forward(layout, state, x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_torchvision_alexnet_weights_give_its_logits():
    layout = [("conv", "features.0", 4, 2), ("relu",), ("maxpool", 3, 2), ("conv", "features.3", 1, 2), ("relu",),
              ("maxpool", 3, 2), ("conv", "features.6", 1, 1), ("relu",), ("conv", "features.8", 1, 1), ("relu",),
              ("conv", "features.10", 1, 1), ("relu",), ("maxpool", 3, 2), ("adaptive", 6), ("flatten",),
              ("linear", "classifier.1"), ("relu",), ("linear", "classifier.4"), ("relu",), ("linear", "classifier.6")]
    shapes = [(64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3), (256, 384, 3, 3), (256, 256, 3, 3),
              (4096, 9216), (4096, 4096), (10, 4096)]
    state = _random_state(layout, shapes, np.random.default_rng(0))  # torchvision's names and shapes, 10 classes
    model = models.alexnet(input_shape=(127, 127, 3), num_classes=10, rngs=nnx.Rngs(0))  # 3x3 -> 6x6 adaptively
    models.load_torch_weights(model, state)
    model.eval()  # Dropout off, as torch's model.eval()
    x = np.random.default_rng(1).uniform(size=(2, 3, 127, 127)).astype(np.float32)
    np.testing.assert_allclose(model(jnp.moveaxis(x, 1, -1)), _torch_forward(layout, state, x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_papers_alexnet_loads_pytorch_weights_with_groups_and_normalisation():
    """The paper's AlexNet written in PyTorch (Conv2d groups=2, LocalResponseNorm(5, 5e-4, 0.75, 2)):
    its grouped kernels (out, in / groups, kh, kw) load and give its logits."""
    layout = [("conv", "features.0", 4, 0), ("relu",), ("lrn", 5, 5e-4, 0.75, 2.0), ("maxpool", 3, 2),
              ("conv", "features.4", 1, 2, 2), ("relu",), ("lrn", 5, 5e-4, 0.75, 2.0), ("maxpool", 3, 2),
              ("conv", "features.8", 1, 1), ("relu",), ("conv", "features.10", 1, 1, 2), ("relu",),
              ("conv", "features.12", 1, 1, 2), ("relu",), ("maxpool", 3, 2), ("flatten",),
              ("linear", "classifier.1"), ("relu",), ("linear", "classifier.4"), ("relu",), ("linear", "classifier.6")]
    shapes = [(96, 3, 11, 11), (256, 48, 5, 5), (384, 256, 3, 3), (384, 192, 3, 3), (256, 192, 3, 3),
              (4096, 9216), (4096, 4096), (10, 4096)]
    state = _random_state(layout, shapes, np.random.default_rng(2))
    model = models.alexnet(variant="paper", num_classes=10, rngs=nnx.Rngs(0))
    models.load_torch_weights(model, state)
    model.eval()
    x = np.random.default_rng(3).uniform(size=(2, 3, 227, 227)).astype(np.float32) * 4  # LRN's sums matter
    np.testing.assert_allclose(model(jnp.moveaxis(x, 1, -1)), _torch_forward(layout, state, x), rtol=1e-4, atol=1e-5)


def test_pytorch_weights_errors():
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.Conv(3, 6, 3, rngs=rngs), nn.Flatten(), nn.Dense(6 * 4 * 4, 2, rngs=rngs))
    state = {"0.weight": np.ones((6, 3, 3, 3)), "0.bias": np.ones(6), "2.weight": np.ones((2, 96)),
             "2.bias": np.ones(2)}
    before = np.asarray(model.layers[0].kernel[...]).copy()
    with pytest.raises(ValueError, match=re.escape("`state_dict` holds 1 modules with weights (0) but the model has 2 "
                                                   "layers with weights (conv, dense)")):
        models.load_torch_weights(model, {k: v for k, v in state.items() if k.startswith("0.")}, input_shape=(6, 6, 3))
    with pytest.raises(ValueError, match=re.escape("`state_dict`'s 2.weight of shape (2, 95) does not fit the dense "
                                                   "layer's kernel (96, 2) (as PyTorch's layout: (2, 96))")):
        models.load_torch_weights(model, {**state, "2.weight": np.ones((2, 95))}, input_shape=(6, 6, 3))
    with pytest.raises(ValueError, match=re.escape("holds batch-norm statistics ('1.running_mean')")):
        models.load_torch_weights(model, {**state, "1.running_mean": np.zeros(6)}, input_shape=(6, 6, 3))
    np.testing.assert_array_equal(model.layers[0].kernel[...], before)  # nothing half-loaded


@pytest.mark.slow
def test_equinox_weights_give_equinoxs_outputs():
    """Equinox's "CNN on MNIST" tutorial network (channels first, MaxPool2d of stride 1, jnp.ravel),
    and the same network in cnnjax (both as experiments/ports.py builds them): its weights loaded
    with load_equinox_weights, the same log-probabilities."""
    ports = load("experiments", "ports")
    original = ports.equinox_cnn(jax.random.key(0))
    ported = ports.equinox_port(original)  # nn.Sequential, filled by models.load_equinox_weights
    x = np.random.default_rng(0).uniform(size=(4, 1, 28, 28)).astype(np.float32)  # Equinox's (C, H, W) examples
    want = jax.vmap(original)(jnp.asarray(x))
    got = jax.nn.log_softmax(ported(jnp.moveaxis(x, 1, -1)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match=re.escape("`eqx_model` holds no equinox.nn.Conv or Linear layer")):
        models.load_equinox_weights(ported, [jax.nn.relu], input_shape=(28, 28, 1))


def test_every_loader_copies_what_it_is_given():
    """JAX reads an aligned host buffer without copying on a CPU: a loaded bias moved by 1 when
    the caller's array was changed in place (torch's next optimizer.step())."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv(3, 6, 1, rngs=nnx.Rngs(0)), nn.Flatten(), nn.Dense(6 * 4 * 4, 2, rngs=nnx.Rngs(1)))
    state = {"0.weight": rng.normal(size=(6, 3, 1, 1)).astype(np.float32), "0.bias": np.zeros(6, np.float32),
             "2.weight": rng.normal(size=(2, 96)).astype(np.float32), "2.bias": np.zeros(2, np.float32)}
    models.load_torch_weights(model, state, input_shape=(4, 4, 3))
    loaded = [np.asarray(a).copy() for a in jax.tree.leaves(nnx.state(model, nnx.Param))]
    for value in state.values():
        value += 1.0  # in place, as an optimizer step does
    weights = [rng.normal(size=s).astype(np.float32) for s in [(1, 1, 3, 6), (6,), (96, 2), (2,)]]
    for array in jax.tree.leaves(nnx.state(model, nnx.Param)):
        np.testing.assert_array_equal(array, loaded.pop(0))
    models.load_keras_weights(model, weights, input_shape=(4, 4, 3))
    keras_loaded = [w.copy() for w in weights]
    for w in weights:
        w *= 2.0
    conv, dense = model.layers[0], model.layers[2]
    for array, want in zip([conv.kernel, conv.bias, dense.kernel, dense.bias], keras_loaded, strict=True):
        np.testing.assert_array_equal(array[...], want)


def test_torch_tensors_loaded_do_not_move_with_the_torch_model():
    torch = pytest.importorskip("torch", reason="loading from torch tensors needs torch (CI installs it)")
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 1), torch.nn.Flatten(), torch.nn.Linear(96, 2))
    model = nn.Sequential(nn.Conv(3, 6, 1, rngs=nnx.Rngs(0)), nn.Flatten(), nn.Dense(96, 2, rngs=nnx.Rngs(1)))
    models.load_torch_weights(model, t.state_dict(), input_shape=(4, 4, 3))
    before = np.asarray(model.layers[2].bias[...]).copy()
    kernel = t[0].weight.detach().numpy().transpose(2, 3, 1, 0).copy()
    with torch.no_grad():
        t[2].bias.add_(1.0)
        t[0].weight.mul_(3.0)
    np.testing.assert_array_equal(model.layers[2].bias[...], before)
    np.testing.assert_array_equal(model.layers[0].kernel[...], kernel)


class _FlattenedHowever(nnx.Module):
    """conv -> ReLU -> a functional max pool -> a flatten written as ``how`` -> dense -> dense:
    pytorch/examples' MNIST network in miniature, ported without an nn.Flatten layer."""

    def __init__(self, how, rngs):
        self.how = how
        self.conv1 = nn.Conv(3, 4, 3, rngs=rngs)
        self.fc1 = nn.Dense(4 * 4 * 4 if how == "average" else 4 * 3 * 3, 5, rngs=rngs)
        self.fc2 = nn.Dense(5, 2, rngs=rngs)

    def __call__(self, x):
        y = cnnjax.relu(self.conv1(x))
        y = cnnjax.adaptive_avgpool(y, 4) if self.how == "average" else cnnjax.maxpool(y, 2)  # 6x6 -> 4x4 or 3x3
        if self.how in ("function", "average"):
            y = cnnjax.flatten(y)
        elif self.how == "reshape":
            y = y.reshape(y.shape[0], -1)
        else:  # already PyTorch's order: channels first
            y = jnp.moveaxis(y, -1, 1).reshape(y.shape[0], -1)
        return self.fc2(cnnjax.relu(self.fc1(y)))


@pytest.mark.parametrize("how", ["function", "reshape", "channels_first", "average"])
@pytest.mark.slow
def test_a_flatten_however_written_loads_pytorchs_order(how):
    """The reorder follows the data, not an nn.Flatten layer: with cnnjax.flatten or a reshape the
    dense rows were not reordered (logits off by 0.4-0.7); a model that flattens channels first
    itself needs none; an average pool on the way rounds the probe's codes, which still read."""
    pool = ("adaptive", 4) if how == "average" else ("maxpool", 2, 2)  # windows of 2 and 3 cells: means round
    layout = [("conv", "conv1", 1, 0), ("relu",), pool, ("flatten",), ("linear", "fc1"), ("relu",),
              ("linear", "fc2")]
    state = _random_state(layout, [(4, 3, 3, 3), (5, 64 if how == "average" else 36), (2, 5)], np.random.default_rng(0))
    model = models.load_torch_weights(_FlattenedHowever(how, nnx.Rngs(0)), state, input_shape=(8, 8, 3))
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(model(jnp.moveaxis(x, 1, -1)), _torch_forward(layout, state, x), rtol=1e-5, atol=1e-5)


def test_a_map_mixed_with_other_features_is_refused():
    class Mixed(nnx.Module):
        def __init__(self, rngs):
            self.conv = nn.Conv(1, 2, 3, rngs=rngs)
            self.fc = nn.Dense(2 * 2 * 2 + 1, 2, rngs=rngs)

        def __call__(self, x):
            maps = cnnjax.flatten(self.conv(x))
            return self.fc(jnp.concatenate([maps, jnp.sum(x, axis=(1, 2))], axis=-1))  # + the input's sum

    state = {"conv.weight": np.ones((2, 1, 3, 3), np.float32), "conv.bias": np.zeros(2, np.float32),
             "fc.weight": np.ones((2, 9), np.float32), "fc.bias": np.zeros(2, np.float32)}
    model = Mixed(nnx.Rngs(0))
    before = np.asarray(model.fc.kernel[...]).copy()
    with pytest.raises(ValueError, match=re.escape("The dense layer's inputs mix a flattened map with values that "
                                                   "are not one (at input 8)")):
        models.load_torch_weights(model, state, input_shape=(4, 4, 1))
    np.testing.assert_array_equal(model.fc.kernel[...], before)


def _body_then_head():
    """A cnnjax port that calls body, then head: two dense layers of one shape."""
    rngs = nnx.Rngs(0)
    return nn.Sequential(nn.Dense(4, 4, activation="relu", rngs=rngs), nn.Dense(4, 4, rngs=rngs))


def _head_first_state():
    rng = np.random.default_rng(0)  # declared head first, as state_dict() lists a module that declares it first
    return {"head.weight": rng.normal(size=(4, 4)).astype(np.float32), "head.bias": rng.normal(size=4).astype(
        np.float32), "body.weight": rng.normal(size=(4, 4)).astype(np.float32),
        "body.bias": rng.normal(size=4).astype(np.float32)}


def test_a_sequentials_modules_of_one_shape_pair_in_index_order():
    """nn.Sequential calls its modules in index order, so two linear layers of one shape in one
    Sequential are not ambiguous (and neither is torchvision's AlexNet, tested above)."""
    state = {k.replace("body", "0").replace("head", "2"): v for k, v in _head_first_state().items()}
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    want = np.maximum(x @ state["0.weight"].T + state["0.bias"], 0) @ state["2.weight"].T + state["2.bias"]
    np.testing.assert_allclose(models.load_torch_weights(_body_then_head(), state, input_shape=(4,))(x), want,
                               rtol=1e-6, atol=1e-6)


def test_layers_declared_in_another_order_than_called_are_refused_or_paired_as_told():
    """Pairing by declaration order loaded head into body (same shapes, error ~1.0). Shapes cannot
    tell the two apart, so the state dict alone is refused; `order` pairs them as the model calls
    them. A dense-only model takes input_shape=(features,)."""
    state = _head_first_state()
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    body = np.maximum(x @ state["body.weight"].T + state["body.bias"], 0)
    want = body @ state["head.weight"].T + state["head.bias"]
    with pytest.raises(ValueError, match=re.escape("`state_dict`'s modules fit the model's layers in more than one "
                                                   "order (head -> dense, body -> dense_1; or body -> dense, head -> "
                                                   "dense_1)")):
        models.load_torch_weights(_body_then_head(), state, input_shape=(4,))
    model = models.load_torch_weights(_body_then_head(), state, input_shape=(4,), order=["body", "head"])
    np.testing.assert_allclose(model(x), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=re.escape("`order` must name each of the state dict's modules with weights "
                                                   "once, in the order the model calls them: ['body', 'head'], got "
                                                   "['body']")):
        models.load_torch_weights(_body_then_head(), state, input_shape=(4,), order=["body"])


def test_a_torch_module_pairs_its_layers_in_the_order_it_calls_them():
    torch = pytest.importorskip("torch", reason="reading a torch module's call order needs torch (CI installs it)")

    class HeadFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(4, 4)
            self.body = torch.nn.Linear(4, 4)
            self.drop = torch.nn.Dropout(0.5)

        def forward(self, x):
            return self.head(self.drop(torch.relu(self.body(x))))

    torch.manual_seed(0)
    t = HeadFirst().train()
    model = models.load_torch_weights(_body_then_head(), t, input_shape=(4,))
    assert t.training and t.drop.training  # its mode restored
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    with torch.no_grad():
        want = t.eval()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=re.escape("Give `order` with a state dict, not with the torch module")):
        models.load_torch_weights(_body_then_head(), t, input_shape=(4,), order=["body", "head"])


@pytest.mark.slow
def test_pytorch_examples_mnist_network_loads_from_torch_itself():
    """pytorch/examples' mnist/main.py Net (conv1, conv2, dropout1, dropout2, fc1, fc2; F.max_pool2d
    and torch.flatten in forward), its cnnjax port written the same way: the same logits."""
    torch = pytest.importorskip("torch", reason="comparing with torch's own forward needs torch (CI installs it)")
    from torch.nn import functional as F

    class Net(torch.nn.Module):  # pytorch/examples, mnist/main.py
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 32, 3, 1)
            self.conv2 = torch.nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = torch.nn.Dropout(0.25)
            self.dropout2 = torch.nn.Dropout(0.5)
            self.fc1 = torch.nn.Linear(9216, 128)
            self.fc2 = torch.nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(self.dropout1(x), 1)
            x = self.dropout2(F.relu(self.fc1(x)))
            return F.log_softmax(self.fc2(x), dim=1)

    port = load("experiments", "ports").pytorch_mnist(nnx.Rngs(0))
    torch.manual_seed(0)
    net = Net().eval()
    models.load_torch_weights(port, net.state_dict())
    port.eval()
    x = np.random.default_rng(0).uniform(size=(4, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.tensor(x)).numpy()
    np.testing.assert_allclose(jax.nn.log_softmax(port(jnp.moveaxis(x, 1, -1))), want, rtol=1e-4, atol=1e-5)

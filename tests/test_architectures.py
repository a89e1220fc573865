"""The landmark architectures: exact parameter counts, receptive fields, small and 224 inputs.

Counting and shape checks use `jax.eval_shape` (nothing is allocated or computed),
so even VGG-19 at 224x224 is checked in CI. Real train steps run for one model of
each family at 28x28x1; every model at 28x28x1 and 224x224x3 is `slow`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.layers import AdaptiveAvgPool, adaptive_pool_matrix, ceil_mode_padding
from cnn_jax.models import MODELS, create_model
from cnn_jax.models import receptive_field as rf

# torchvision's figures (1,000 classes, 224x224x3); vgg13_bn / vgg19_bn too.
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840, "googlenet": 6_624_904,
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848, "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240, "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
}
NEW_MODELS = sorted(TORCHVISION_PARAMS) + ["resnet20", "resnet32", "resnet56"]


def small_input_kwargs(name: str) -> dict:
  """The documented small-input adaptation of each model (none for the CIFAR ResNets)."""
  return {} if name in ("resnet20", "resnet32", "resnet56") else {"stem": "cifar"}


def count_params(model, size: int, channels: int) -> int:
  x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
  v = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v["params"]))


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_count_equals_torchvision(name):
  assert count_params(create_model(name, num_classes=1000), 224, 3) == TORCHVISION_PARAMS[name]


def test_other_published_parameter_counts():
  assert count_params(create_model("resnet20"), 32, 3) == 269_722  # He et al. 2016, option A
  assert count_params(create_model("lenet5"), 32, 1) == 61_706
  # Both auxiliary heads: 6,624,904 + 3,188,968 + 3,191,016 (torchvision, aux_logits=True).
  assert count_params(create_model("googlenet", aux_logits=True), 224, 3) == 13_004_888
  # Option B (projection) shortcuts add 1x1 conv + BN at the two downsampling blocks.
  b = count_params(create_model("resnet20", shortcut="projection"), 32, 3)
  assert b == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)


def test_small_stems_change_only_the_stem():
  # ResNet-18: 7x7x3x64 first conv -> 3x3x3x64.
  full = count_params(create_model("resnet18"), 224, 3)
  assert count_params(create_model("resnet18", stem="cifar"), 32, 3) == full - (49 - 9) * 3 * 64
  # VGG: ceil-mode pools, same parameters; AlexNet: 11x11x3x64 conv1 -> 3x3x3x64.
  assert count_params(create_model("vgg11", stem="cifar"), 28, 3) == 132_863_336
  assert count_params(create_model("alexnet", stem="cifar"), 28, 3) == 61_100_840 - 112 * 3 * 64


# Receptive fields.


def test_lenet5_c5_sees_the_whole_32x32_input():
  rep = rf.report(create_model("lenet5"), 32, 1)
  got = [(r.feature, r.size, r.rf) for r in rep.rows if r.feature in ("C1", "S2", "C3", "S4", "C5")]
  assert got == [("C1", 28, 5), ("S2", 14, 6), ("C3", 10, 14), ("S4", 5, 16), ("C5", 1, 32)]
  # A 28x28 Fashion-MNIST image is padded to 32: C5 sees all of it and 2 pixels of border.
  rep28 = rf.report(create_model("lenet5"), 28, 1)
  assert rep28.row("C5").rf == 32 and rep28.row("C5").size == 1


def test_vgg16_receptive_fields_by_hand():
  rep = rf.report(create_model("vgg16"), 224, 3)
  # 3x3 convs add 2 * jump, 2x2/2 pools add 1 * jump and double it:
  # conv1_2 5, pool1 6, conv2_2 14, pool2 16, conv3_3 40, pool3 44, conv4_3 92,
  # pool4 100, conv5_3 100 + 3*2*16 = 196, pool5 196 + 16 = 212.
  got = {r.feature: (r.rf, r.jump, r.size) for r in rep.rows if r.feature}
  assert got["conv1_2"][0] == 5 and got["pool1"][0] == 6
  assert got["conv3_3"][0] == 40 and got["pool4"][0] == 100
  assert got["conv5_3"] == (196, 16, 14)
  assert got["pool5"] == (212, 32, 7)


def test_alexnet_pool5_receptive_field_is_195():
  # 195 is the figure in Araujo, Norris & Sim, "Computing receptive fields", Distill 2019.
  rep = rf.report(create_model("alexnet"), 224, 3)
  assert (rep.row("pool5").rf, rep.row("pool5").jump, rep.row("pool5").size) == (195, 32, 6)
  assert rep.row("conv1").rf == 11 and rep.row("conv1").size == 55


def test_resnet_receptive_fields():
  # ResNet-18: stem 11 (7x7/2 conv, 3x3/2 pool), then each 3x3 conv adds 2 * jump:
  # layer1 11 + 4*8 = 43, layer2 43 + 4*(8+8+8) + 8 = 99 ... layer4 435 (the usual figure).
  rep = rf.report(create_model("resnet18"), 224, 3)
  assert [rep.row(f"layer{i}").rf for i in range(1, 5)] == [43, 99, 211, 435]
  assert rep.row("layer2_0/downsample").params == 64 * 128 + 2 * 128
  # The small stem starts from a 3x3 conv with jump 1: layer4 of a 28x28 input is 4x4.
  small = rf.report(create_model("resnet18", stem="cifar"), 28, 1)
  assert (small.row("layer4").size, small.row("layer4").jump) == (4, 8)


def test_googlenet_ceil_mode_sizes_at_224():
  rep = rf.report(create_model("googlenet"), 224, 3)
  sizes = {r.name: r.size for r in rep.rows}
  assert [sizes[n] for n in ("conv1", "maxpool1", "maxpool2", "maxpool3", "maxpool4")] == [
      112, 56, 28, 14, 7]
  assert rep.row("inception5").shape == (7, 7, 1024)


def _unit_support(feature_fn, size, channels, row, col):
  return rf.effective_receptive_field(feature_fn, size, channels, row, col)


@pytest.mark.parametrize("name,kwargs,size,channels,feature", [
    ("lenet5", dict(activation="identity", pool="avg"), 28, 1, "S4"),
    ("resnet20", dict(activation="identity"), 16, 1, "layer2"),
])
def test_gradient_support_equals_theoretical_receptive_field(name, kwargs, size, channels, feature):
  """Empirical cross-check: in a linear network the gradient of one unit reaches exactly
  its theoretical receptive field (clipped to the image)."""
  model = create_model(name, **kwargs)
  x0 = jnp.zeros((1, size, size, channels))
  v = model.init(jax.random.key(0), x0)

  def feature_fn(x):
    _, state = model.apply(v, x, mutable=["intermediates"])
    return state["intermediates"][feature][0]

  row = next(r for r in rf.walk(rf.layer_specs(model), size) if r.spec.feature == feature)
  i = row.size // 2
  support = _unit_support(feature_fn, size, channels, i, i)
  centre = row.start + i * row.jump
  lo, hi = centre - (row.rf - 1) / 2, centre + (row.rf - 1) / 2
  expected = np.zeros((size, size), bool)
  pix = np.arange(size)
  inside = (pix >= lo) & (pix <= hi)
  expected[np.ix_(inside, inside)] = True
  np.testing.assert_array_equal(support, expected)


# Shapes, specs and features at several input sizes (traced, not computed).


def _trace_cases():
  for name in NEW_MODELS:
    yield name, {}, 224, 3
    yield name, small_input_kwargs(name), 28, 1
  yield "vgg16", {}, 32, 3
  yield "alexnet", {}, 63, 3
  yield "alexnet", {"stem": "cifar"}, 15, 3
  yield "googlenet", {}, 15, 1
  yield "googlenet", {"aux_logits": True}, 224, 3


@pytest.mark.parametrize("name,kwargs,size,channels", list(_trace_cases()))
def test_layer_specs_match_the_traced_model(name, kwargs, size, channels):
  model = create_model(name, num_classes=10, **kwargs)
  rep = rf.report(model, size, channels)  # raises if a spec size differs from the module's
  variables = rf.trace(model, size, channels)
  for r in rep.rows:
    assert r.shape is not None, f"{r.name} is not a module of {name}"
    if r.feature:
      sown = variables["intermediates"][r.feature][0].shape[1:]
      assert sown == r.shape, (r.feature, sown, r.shape)
  assert sum(r.params for r in rep.rows) == rep.total_params  # every parameter is in a row
  assert rep.rows[-1].shape == (10,)


@pytest.mark.parametrize("name,kwargs,size,match", [
    ("vgg16", {}, 28, r"VGG16 needs inputs of at least 32x32, got 28x28.*stem=cifar"),
    ("vgg11_bn", {}, 31, r"at least 32x32.*image_size=32"),
    ("alexnet", {}, 62, r"AlexNet needs inputs of at least 63x63.*image_size=64"),
    ("alexnet", {"stem": "cifar"}, 14, r"at least 15x15"),
    ("googlenet", {}, 14, r"GoogLeNet needs inputs of at least 15x15.*stem=cifar"),
])
def test_too_small_input_is_a_clear_error(name, kwargs, size, match):
  model = create_model(name, **kwargs)
  with pytest.raises(ValueError, match=match):
    count_params(model, size, 1)


def test_unknown_stem_lists_the_stems():
  with pytest.raises(ValueError, match="Unknown stem 'tiny'. Known stems: imagenet, cifar"):
    count_params(create_model("resnet18", stem="tiny"), 32, 3)
  with pytest.raises(ValueError, match="6n\\+2"):
    count_params(create_model("resnet20", depth=21), 32, 3)


def test_all_architectures_are_registered():
  assert set(NEW_MODELS) | {"lenet5"} <= set(MODELS.names())


# Training steps.


def _loss_and_updates(model, params, batch_stats, x, y, key):
  logits, updates = model.apply(
      {"params": params, "batch_stats": batch_stats}, x, train=True,
      mutable=["batch_stats", "intermediates"], rngs={"dropout": key},
  )
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, updates)


def _train_step(model, params, batch_stats, x, y, key):
  grad_fn = jax.value_and_grad(functools.partial(_loss_and_updates, model), has_aux=True)
  (loss, (logits, updates)), grads = grad_fn(params, batch_stats, x, y, key)
  params = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
  return params, updates, loss, logits


def _check_step(name, kwargs, size, channels, batch=2, num_classes=10, abstract=True):
  model = create_model(name, num_classes=num_classes, **kwargs)
  x = jax.random.normal(jax.random.key(1), (batch, size, size, channels))
  y = jnp.arange(batch) % num_classes
  key = jax.random.key(2)
  if abstract:
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    out = jax.eval_shape(functools.partial(_train_step, model), shapes["params"],
                         shapes.get("batch_stats", {}), x, y, key)
    params, updates, loss, logits = out
    assert jax.tree.map(lambda a: a.shape, params) == jax.tree.map(lambda a: a.shape,
                                                                   shapes["params"])
  else:
    v = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
    params, updates, loss, logits = jax.jit(functools.partial(_train_step, model))(
        v["params"], v.get("batch_stats", {}), x, y, key)
    assert np.isfinite(float(loss))
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(params),
                                                     jax.tree.leaves(v["params"])))
    if v.get("batch_stats"):  # BatchNorm running averages moved
      assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(updates["batch_stats"]),
                                                       jax.tree.leaves(v["batch_stats"])))
    eval_logits = model.apply(v, x, train=False)
    assert eval_logits.shape == (batch, num_classes) and np.all(np.isfinite(eval_logits))
  assert logits.shape == (batch, num_classes) and logits.dtype == jnp.float32
  features = {r.spec.feature for r in rf.walk(rf.layer_specs(model), size) if r.spec.feature}
  assert set(updates["intermediates"]) >= features
  return updates


# Deeper versions of blocks that CI already traces; their backward pass is slow to trace.
DEEP = ("resnet101", "resnet152", "resnet32", "resnet56")


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in NEW_MODELS])
def test_train_step_traces_at_28x28x1(name):
  """Every model: a full train step (dropout rng, BatchNorm updates, gradients), traced."""
  _check_step(name, small_input_kwargs(name), 28, 1)


def test_train_step_runs_at_28x28x1():
  """One model runs for real in CI: finite loss, parameters and BN statistics move.
  (Every model runs in the slow tests below.)"""
  _check_step("resnet18", small_input_kwargs("resnet18"), 28, 1, abstract=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_MODELS)
def test_train_step_runs_at_28x28x1_all(name):
  _check_step(name, small_input_kwargs(name), 28, 1, abstract=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_MODELS)
def test_train_step_runs_at_224x224x3(name):
  _check_step(name, {}, 224, 3, batch=2, num_classes=1000, abstract=False)


def test_googlenet_aux_heads_in_training_only():
  model = create_model("googlenet", num_classes=7, aux_logits=True, stem="cifar")
  updates = _check_step("googlenet", {"aux_logits": True, "stem": "cifar"}, 28, 1, num_classes=7)
  assert updates["intermediates"]["aux1_logits"][0].shape == (2, 7)
  assert updates["intermediates"]["aux2_logits"][0].shape == (2, 7)
  x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
  v = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  _, state = jax.eval_shape(
      functools.partial(model.apply, train=False, mutable=["intermediates"]), v, x)
  assert "aux1_logits" not in state["intermediates"]


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "vgg11_bn", "alexnet", "resnet20"])
def test_bfloat16_compute_float32_params(name):
  model = create_model(name, num_classes=10, dtype="bfloat16", **small_input_kwargs(name))
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  v = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  assert {p.dtype for p in jax.tree.leaves(v["params"])} == {jnp.dtype(jnp.float32)}
  logits, state = jax.eval_shape(
      functools.partial(model.apply, train=False, mutable=["intermediates"]), v, x)
  assert logits.dtype == jnp.float32
  feats = [t[0] for t in state["intermediates"].values()]
  assert feats and all(f.dtype == jnp.bfloat16 for f in feats)


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "alexnet", "googlenet", "resnet20"])
def test_activation_is_configurable(name):
  for act in ("relu", "gelu"):
    model = create_model(name, activation=act, num_classes=10, **small_input_kwargs(name))
    assert count_params(model, 28, 1) > 0
  with pytest.raises(Exception, match="Unknown activation 'relux'"):
    count_params(create_model(name, activation="relux", **small_input_kwargs(name)), 28, 1)


# Layers added for these models.


@pytest.mark.parametrize("size,out", [(7, 7), (14, 7), (13, 6), (14, 4), (5, 7), (1, 7), (10, 3)])
def test_adaptive_avg_pool_matches_pytorch_bins(size, out):
  x = jax.random.normal(jax.random.key(0), (2, size, size + 1, 3))
  y = AdaptiveAvgPool(out).apply({}, x)
  ref = np.zeros((2, out, out, 3))
  xn = np.asarray(x)
  w = size + 1
  for i in range(out):
    h0, h1 = (i * size) // out, -(-(i + 1) * size // out)
    for j in range(out):
      w0, w1 = (j * w) // out, -(-(j + 1) * w // out)
      ref[:, i, j] = xn[:, h0:h1, w0:w1].mean(axis=(1, 2))
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
  assert adaptive_pool_matrix(size, out).sum(axis=1).tolist() == pytest.approx([1.0] * out)


@pytest.mark.parametrize("size,window,stride,pad,expected_out", [
    (112, 3, 2, 0, 56), (56, 3, 2, 0, 28), (28, 3, 2, 0, 14), (14, 2, 2, 0, 7), (7, 2, 2, 0, 4),
    (1, 2, 2, 0, 1), (6, 3, 2, 1, 4), (2, 3, 2, 0, 1),
])
def test_ceil_mode_padding_gives_pytorch_sizes(size, window, stride, pad, expected_out):
  lo, hi = ceil_mode_padding(size, window, stride, pad)
  assert (size + lo + hi - window) // stride + 1 == expected_out
  with pytest.raises(ValueError, match="needs an input of at least"):
    ceil_mode_padding(1, 3, 2)

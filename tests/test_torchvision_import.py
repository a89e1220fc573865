"""torchvision weights in our models: the same logits as torchvision, from a saved state dict.

The oracle is torchvision itself (an optional extra: `pip install -e '.[torch]'`; the
tests that need it are skipped without it). Each supported model is built by
torchvision with random weights and random BatchNorm statistics, saved with
`torch.save`, imported, and run on the same two random images in both libraries,
at 224x224 and at 197x163 (odd and non-square: adaptive pools that overlap and
repeat pixels, ceil-mode pools with a partial last window). The deepest models
(resnet101/152, vgg13/16/19 with and without BN) and GoogLeNet's `transform_input`
check are `slow`; every model's key and shape layout is still checked in CI, from
torchvision's model on the meta device.
"""

import json
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest
from conftest import REPO
from flax.traverse_util import unflatten_dict
from test_cli import assert_one_line_error, run_module

from cnn_jax.errors import ConfigError
from cnn_jax.models import create_model
from cnn_jax.models import torchvision_import as tvi

TORCH_REASON = "PyTorch not installed: pip install -e '.[torch]'"
FAST = ("resnet18", "resnet34", "resnet50", "vgg11", "vgg11_bn", "alexnet", "googlenet")
SIZES = ((224, 224), (197, 163))


@pytest.fixture(scope="module")
def torch():
  torch = pytest.importorskip("torch", reason=TORCH_REASON)
  pytest.importorskip("torchvision", reason=TORCH_REASON)
  torch.set_num_threads(2)
  return torch


def torchvision_model(torch, name: str, **kwargs):
  """torchvision's `name` with random weights, in eval mode, its BatchNorm layers given
  random scales and shifts and running statistics measured on random images.

  With torchvision's initial statistics (mean 0, variance 1) the activations of the
  randomly initialised networks shrink layer by layer until the logits barely depend on
  the input (GoogLeNet's by 1e-7 of their size), so a wrong early layer would go unseen.
  Statistics measured after the random scales keep every layer's output near unit
  variance; the test checks that the logits of two images differ. Residual branches end
  with small scales (0.1-0.3), as trained ResNets' do: with scales near 1 a random
  ResNet-152 amplifies a 1e-7 change of its input 370-fold, and torchvision's own float32
  logits differ from its float64 ones by 1.6e-4 of the largest.
  """
  import torchvision

  torch.manual_seed(0)
  if name == "googlenet":
    kwargs.setdefault("init_weights", True)  # the default, without its FutureWarning
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  # The last BatchNorm of each residual branch (where `zero_init_residual` puts zeros).
  last = {id(b.bn3 if hasattr(b, "bn3") else b.bn2) for b in model.modules()
          if isinstance(b, (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck))}
  g = torch.Generator().manual_seed(1)
  for bn in bns:
    low, high = (0.1, 0.3) if id(bn) in last else (0.5, 1.5)
    bn.weight.data.copy_(torch.rand(bn.num_features, generator=g) * (high - low) + low)
    bn.bias.data.copy_(torch.randn(bn.num_features, generator=g) * 0.2)
    bn.reset_running_stats()
    bn.momentum = None  # train mode accumulates the exact mean and variance of what it sees
  if bns:
    with torch.no_grad():
      model.train()(torch.randn(4, 3, 112, 112, generator=g))
  return model.eval()


def assert_same_logits(torch, theirs, model, variables, height: int, width: int) -> None:
  x = np.random.default_rng(height).standard_normal((2, 3, height, width)).astype(np.float32)
  with torch.no_grad():
    want = theirs(torch.from_numpy(x)).numpy()
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  # float32 against torch's float32 on the CPU: on a GPU, XLA's default for float32
  # convolutions and dots is TF32 (about 1e-3 off), which this comparison is not about.
  with jax.default_matmul_precision("highest"):
    got = np.asarray(apply(variables, x.transpose(0, 2, 3, 1)))  # NCHW -> NHWC
  assert got.shape == want.shape
  assert np.abs(want[0] - want[1]).max() > 0.01 * np.abs(want).max()  # the input matters
  err = np.abs(got - want).max() / np.abs(want).max()
  assert err <= 1e-4, f"{height}x{width}: max |ours - torchvision| = {err:.2e} of the largest logit"


@pytest.mark.parametrize("name", [
    n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in tvi.TORCHVISION_MODELS])
def test_logits_equal_torchvision(torch, name, tmp_path):
  theirs = torchvision_model(torch, name)
  path = tmp_path / f"{name}.pth"
  torch.save(theirs.state_dict(), path)
  options, variables = tvi.import_checkpoint(name, path)
  path.unlink()
  # googlenet(weights=None) has the auxiliary heads; they are imported too.
  assert options == {"num_classes": 1000, **({"aux_logits": True} if name == "googlenet" else {})}
  model = create_model(name, **options)
  for height, width in SIZES:
    assert_same_logits(torch, theirs, model, variables, height, width)


@pytest.mark.slow
def test_googlenet_transform_input_is_pixels_scaled_to_plus_minus_one(torch):
  """torchvision's pretrained GoogLeNet (transform_input=True) on ImageNet-normalised pixels
  computes what ours computes on `(x - 0.5) / 0.5` (the README's advice)."""
  theirs = torchvision_model(torch, "googlenet", transform_input=True)
  options, variables = tvi.convert_state_dict(
      "googlenet", {k: v.numpy() for k, v in theirs.state_dict().items()})
  pixels = np.random.default_rng(0).random((2, 3, 224, 224)).astype(np.float32)
  mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
  std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
  with torch.no_grad():
    want = theirs(torch.from_numpy((pixels - mean) / std)).numpy()
  got = create_model("googlenet", **options).apply(variables, ((pixels - 0.5) / 0.5).transpose(0, 2, 3, 1))
  assert np.abs(np.asarray(got) - want).max() <= 1e-4 * np.abs(want).max()


def test_the_comparison_catches_a_wrong_layout(torch):
  """What the logits test would see if the conversion transposed a kernel the wrong way."""
  theirs = torchvision_model(torch, "alexnet")
  sd = {k: v.numpy() for k, v in theirs.state_dict().items()}
  options, variables = tvi.convert_state_dict("alexnet", sd)
  model = create_model("alexnet", **options)
  assert_same_logits(torch, theirs, model, variables, 224, 224)
  params = variables["params"]
  wrong = [
      {**params, "dense1": {**params["dense1"], "kernel": sd["classifier.1.weight"].T}},  # no CHW->HWC
      {**params, "block1_conv": {"conv": {**params["block1_conv"]["conv"], "kernel":
                                          params["block1_conv"]["conv"]["kernel"].swapaxes(0, 1)}}},
  ]
  for p in wrong:
    with pytest.raises(AssertionError, match="of the largest logit"):
      assert_same_logits(torch, theirs, model, {**variables, "params": p}, 224, 224)


def meta_state_dict(torch, name: str, **kwargs) -> dict:
  """Zero arrays of the shapes of torchvision's state dict; nothing is allocated."""
  import torchvision

  if name == "googlenet":
    kwargs.setdefault("init_weights", False)
  with torch.device("meta"), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    sd = getattr(torchvision.models, name)(weights=None, **kwargs).state_dict()
  return {k: np.broadcast_to(np.float32(0), tuple(v.shape)) for k, v in sd.items()}


@pytest.mark.parametrize("name", list(tvi.TORCHVISION_MODELS))
def test_every_layout_fills_every_variable(torch, name):
  options, variables = tvi.convert_state_dict(name, meta_state_dict(torch, name, num_classes=7))
  assert options["num_classes"] == 7
  expected = tvi.expected_shapes(create_model(name, **options))
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  assert {tuple(k.key for k in p): v.shape for p, v in flat} == expected


def test_googlenet_without_aux_heads(torch):
  sd = meta_state_dict(torch, "googlenet", aux_logits=False)
  options, variables = tvi.convert_state_dict("googlenet", sd)
  assert options == {"num_classes": 1000, "aux_logits": False}
  assert "aux1" not in variables["params"]


def test_flattened_dense_inputs_are_reordered():
  """VGG's fc6 weight column for input (c, h, w) becomes our kernel row for (h, w, c)."""
  c, h, w = 512, 7, 7
  layer = tvi.Layer("dense1", "classifier.0", "dense", flattened=(c, h, w))
  weight = np.arange(3 * c * h * w, dtype=np.float32).reshape(3, c * h * w)
  kernel = tvi._to_ours(layer, "kernel", weight)
  assert kernel.shape == (h * w * c, 3)
  ci, hi, wi = 5, 2, 6
  assert kernel[(hi * w + wi) * c + ci, 1] == weight[1, (ci * h + hi) * w + wi]


# Mismatched weights: one ConfigError naming the first key that does not fit.


def test_another_resnets_weights_name_the_first_misfit(torch):
  resnet18, resnet34 = meta_state_dict(torch, "resnet18"), meta_state_dict(torch, "resnet34")
  with pytest.raises(ConfigError, match=r"resnet34: it has no layer1\.2\.conv1\.weight "
                                        r"\(shape \(64, 64, 3, 3\)\)"):
    tvi.convert_state_dict("resnet34", resnet18)
  with pytest.raises(ConfigError, match=r"resnet18: layer1\.2\.conv1\.weight \(shape \(64, 64, "
                                        r"3, 3\)\) has no place in resnet18 \(nor 79 more keys\)"):
    tvi.convert_state_dict("resnet18", resnet34)
  with pytest.raises(ConfigError, match=r"layer1\.0\.conv1\.weight has shape \(64, 64, 1, 1\), "
                                        r"resnet18 needs \(64, 64, 3, 3\)"):
    tvi.convert_state_dict("resnet18", meta_state_dict(torch, "resnet50"))
  with pytest.raises(ConfigError, match="it has no 2-D classifier.6.weight"):
    tvi.convert_state_dict("vgg11", resnet18)


def test_unsupported_model_lists_the_supported_ones():
  with pytest.raises(ConfigError, match="into 'lenet5'. Models with torchvision's layout: "
                                        "resnet18, resnet34"):
    tvi.convert_state_dict("lenet5", {})


def test_without_torch_reading_names_the_extra(monkeypatch, tmp_path):
  (tmp_path / "w.pth").write_bytes(b"")
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
  with pytest.raises(ConfigError, match=r"needs PyTorch, an optional extra: pip install -e "
                                        r"'\.\[torch\]'"):
    tvi.load_state_dict(tmp_path / "w.pth")


def test_importing_the_package_does_not_import_torch():
  code = ("import sys, cnn_jax.models.torchvision_import, cnn_jax.train.import_weights, "
          "experiments.import_weights; assert 'torch' not in sys.modules, 'torch imported'")
  r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                     timeout=120, check=False)
  assert r.returncode == 0, r.stderr[-2000:]


# The run directory: what Run.load_model, init_from and the cnn extractor read.


@pytest.fixture(scope="module")
def imported_resnet18(torch, tmp_path_factory):
  """(torchvision's resnet18, the workdir the CLI made of its weights)."""
  tmp = tmp_path_factory.mktemp("tv")
  theirs = torchvision_model(torch, "resnet18", num_classes=10)
  torch.save(theirs.state_dict(), tmp / "resnet18.pth")
  workdir = tmp / "resnet18_tv"
  r = run_module("experiments.import_weights", "--source=torchvision", "--model=resnet18",
                 f"--checkpoint={tmp / 'resnet18.pth'}", f"--workdir={workdir}",
                 "--image_size=32")
  assert r.returncode == 0, r.stderr[-2000:]
  assert json.loads(r.stdout) == {"workdir": str(workdir),
                                  "model": {"name": "resnet18", "num_classes": 10}}
  return theirs, workdir


def test_the_workdir_is_a_run_with_torchvisions_logits(torch, imported_resnet18):
  from cnn_jax.run import Run

  theirs, workdir = imported_resnet18
  assert sorted(p.name for p in workdir.iterdir()) == ["checkpoints", "config.json"]
  assert not list(workdir.parent.glob(".*importing*"))
  model, variables, config = Run(workdir).load_model()
  assert config.data.image_size == 32 and config.model.num_classes == 10
  assert_same_logits(torch, theirs, model, variables, 32, 32)


def test_init_from_the_imported_run(imported_resnet18):
  import optax

  from cnn_jax.run import Run
  from cnn_jax.train.init_from import initialize_from
  from cnn_jax.train.steps import TrainState

  _, workdir = imported_resnet18
  # A train state of resnet18 with a new head (5 classes): the head stays, the rest is copied.
  shapes = tvi.expected_shapes(create_model("resnet18", num_classes=5))
  fresh = unflatten_dict({k: np.zeros(s, np.float32) for k, s in shapes.items()})
  state = TrainState.create(apply_fn=None, params=fresh["params"], tx=optax.identity(),
                            batch_stats=fresh["batch_stats"], dropout_key=jax.random.key(0))
  state = initialize_from(state, str(workdir), "resnet18")
  source = Run(workdir).restore_variables()
  np.testing.assert_array_equal(state.params["layer4_1"]["conv2"]["conv"]["kernel"],
                                source["params"]["layer4_1"]["conv2"]["conv"]["kernel"])
  np.testing.assert_array_equal(state.batch_stats["conv1"]["norm"]["bn"]["var"],
                                source["batch_stats"]["conv1"]["norm"]["bn"]["var"])
  assert not state.params["fc"]["kernel"].any() and state.params["fc"]["kernel"].shape == (512, 5)


def test_cnn_features_of_the_imported_run(imported_resnet18):
  from cnn_jax.features import EXTRACTORS

  _, workdir = imported_resnet18
  images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  extract = EXTRACTORS.get("cnn")(image_shape=(32, 32, 3), train_images=images,
                                  workdir=str(workdir), layer="pooled")
  assert extract(images).shape == (4, 512)


def test_cli_errors_are_one_line(imported_resnet18, tmp_path):
  _, workdir = imported_resnet18
  checkpoint = workdir.parent / "resnet18.pth"
  assert_one_line_error(
      run_module("experiments.import_weights", "--model=resnet34", f"--checkpoint={checkpoint}",
                 f"--workdir={tmp_path / 'w'}"),
      "does not fit torchvision's resnet34: it has no layer1.2.conv1.weight")
  assert_one_line_error(
      run_module("experiments.import_weights", "--model=resnet18", f"--checkpoint={checkpoint}",
                 f"--workdir={workdir}"),
      "exists and is not an empty directory")
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("args, expected", [
    (("--model=resnet18",), "missing --checkpoint ("),
    (("--source=keras", "--model=resnet18", "--checkpoint=x.pth", "--workdir=/tmp/x"),
     "value should be one of <torchvision>"),
    (("--model=lenet5", "--checkpoint=x.pth", "--workdir=/nonexistent/x"),
     "Cannot import torchvision weights into 'lenet5'"),
    (("--model=resnet18", "--checkpoint=/nonexistent.pth", "--workdir=/nonexistent/x"),
     "Checkpoint /nonexistent.pth not found"),
])
def test_bad_flags_are_one_line(args, expected):
  assert_one_line_error(run_module("experiments.import_weights", *args), expected)

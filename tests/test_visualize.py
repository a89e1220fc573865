"""What the units learned: top patches are the right images, at the right places, with
exactly the receptive field; the CLI writes its pictures and nothing else."""

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

from cnn_jax import visualize
from cnn_jax.data import Normalization, load_split
from cnn_jax.models import create_model
from cnn_jax.models.receptive_field import LayerSpec
from cnn_jax.run import Run

VERTICAL_LINE = np.array([[-1.0, 1.0, -1.0]] * 3)  # the lecture's vertical-line filter


class LineNet(nn.Module):
  """One 3x3 VALID conv (no bias), sown as "V"."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(1, (3, 3), padding="VALID", use_bias=False, name="conv")(x)
    self.sow("intermediates", "V", x)
    return x.mean(axis=(1, 2, 3))

  def layer_specs(self):
    return [LayerSpec("conv", kernel=3, feature="V")]


def test_vertical_line_unit_finds_the_lines_where_they_were_drawn():
  rng = np.random.default_rng(0)
  n_lines, n_blank, size = 14, 6, 16
  images = np.zeros((n_lines + n_blank, size, size, 1), np.uint8)
  drawn = {}
  # Brightness 255, 251, ..., 203: a line's centre (3v) beats any off-centre response (<= 2v).
  for i, v in enumerate(255 - 4 * np.arange(n_lines)):
    y0, x0 = int(rng.integers(0, size - 2)), int(rng.integers(1, size - 1))
    images[i, y0:y0 + 3, x0] = v
    drawn[i] = (y0, x0, int(v))
  order = rng.permutation(len(images))  # lines and blanks mixed over the batches
  images = images[order]
  where = {int(np.flatnonzero(order == i)[0]): d for i, d in drawn.items()}
  model = LineNet()
  variables = {"params": {"conv": {"kernel": jnp.asarray(VERTICAL_LINE[:, :, None, None],
                                                         jnp.float32)}}}
  geom = visualize.geometries(model, variables, size, 1, size)["V"]
  assert (geom.jump, geom.rf, geom.offset) == (1, 3, 0)
  found = visualize.top_patches(model, variables, images, Normalization(0.0, 1.0), ["V"],
                                top=n_lines, batch_size=8)["V"]  # 3 batches, the last padded
  records = visualize.patch_records(geom, found, [0])
  assert [r["image"] for r in records] == sorted(where, key=lambda i: -where[i][2])
  for r in records:
    y0, x0, v = where[r["image"]]
    assert r["position"] == [y0, x0 - 1]
    assert r["box"] == [y0, y0 + 3, x0 - 1, x0 + 2] and not r["clipped"]
    assert r["activation"] == pytest.approx(3 * v / 255, rel=1e-6)
    patch = images[r["image"], y0:y0 + 3, x0 - 1:x0 + 2, 0]
    assert (patch[:, 1] == v).all() and (patch[:, [0, 2]] == 0).all()  # the line, centred


def _check_true_fields(model, images, image_size, layer, expect):
  """Zeroing every stored pixel outside a reported box leaves the unit unchanged; changing
  a corner pixel of the box changes it."""
  stored = images.shape[1]
  variables = model.init(jax.random.key(1), jnp.zeros((1, image_size, image_size, 1)))
  normalize = Normalization.from_images(images, image_size)
  geom = visualize.geometries(model, variables, image_size, 1, stored)[layer]
  assert (geom.jump, geom.rf, geom.offset) == expect
  found = visualize.top_patches(model, variables, images, normalize, [layer], top=2,
                                batch_size=5)[layer]
  records = visualize.patch_records(geom, found, range(geom.channels))
  assert any(r["clipped"] for r in records) and any(not r["clipped"] for r in records)
  probes = []
  for r in records:
    y0, y1, x0, x1 = r["box"]
    inside = np.zeros(images.shape[1:3], bool)
    inside[y0:y1, x0:x1] = True
    probes.append(np.where(inside[..., None], images[r["image"]], 0))
    for y, x in ((y0, x0), (y0, x1 - 1), (y1 - 1, x0), (y1 - 1, x1 - 1)):
      changed = images[r["image"]].copy()
      changed[y, x] = 0 if changed[y, x] > 127 else 255
      probes.append(changed)
  _, state = model.apply(variables, normalize(jnp.asarray(np.stack(probes))),
                         mutable=["intermediates"])
  acts = np.asarray(state["intermediates"][layer][0]).reshape(len(records), 5, -1,
                                                               geom.channels)
  for i, r in enumerate(records):
    y, x = r["position"]
    unit = acts[i, :, y * geom.shape[1] + x, r["unit"]]
    assert unit[0] == pytest.approx(r["activation"], abs=1e-5), r
    assert (np.abs(unit[1:] - r["activation"]) > 1e-6).all(), r


def test_reported_patch_is_the_true_receptive_field_of_lenet5_c3():
  """28x28 zero-padded to 32x32 (offset 2), average pooling (every pixel counts), stride 2."""
  images = np.random.default_rng(0).integers(0, 256, (10, 28, 28, 1), dtype=np.uint8)
  _check_true_fields(create_model("lenet5", pool="avg"), images, 28, "C3", (2, 14, 2))


def test_reported_patch_is_the_true_receptive_field_with_same_padding():
  """SimpleCNN: SAME-padded 3x3 convs, each followed by a 2x2 pool (offset 3, jump 4)."""
  images = np.random.default_rng(2).integers(0, 256, (10, 28, 28, 1), dtype=np.uint8)
  model = create_model("simple_cnn", conv_features=(4, 4), dense_features=(8,), pool="avg",
                       activation="tanh")
  _check_true_fields(model, images, 28, "conv2", (4, 10, 3))


def test_reported_patch_is_the_true_receptive_field_through_a_resize():
  """8x8 images upsampled to 24x24 (as configs/lenet5_digits.py does): boxes in stored pixels."""
  images = np.random.default_rng(1).integers(0, 256, (10, 8, 8, 1), dtype=np.uint8)
  _check_true_fields(create_model("lenet5", pool="avg"), images, 24, "C1", (1, 5, 4))


def _tree_hash(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  for p in sorted(path.rglob("*")):
    rel = p.relative_to(path)
    if rel.parts[0] in ("visualize", "tensorboard"):
      continue
    h.update(str(rel).encode() + (p.read_bytes() if p.is_file() else b"/"))
  return h.hexdigest()


SUITE = "test_visualize"


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
  """A one-experiment suite (configs/lenet5_digits.py, 1 epoch, seed 0), without pictures."""
  from cnn_jax import benchmark

  if SUITE not in benchmark.SUITES:
    benchmark.register(benchmark.Experiment(
        name="vis_lenet5", kind="learned", representation="LeNet-5, 1 epoch",
        recipe="configs/lenet5_{dataset}.py", overrides={"num_epochs": 1},
    ))
    benchmark.register_suite(SUITE, ("vis_lenet5",))
  workdir = tmp_path_factory.mktemp("suite")
  benchmark.run_suite(SUITE, "digits", 1, workdir)
  return workdir, workdir / "runs" / "vis_lenet5" / "seed_0" / "train"


@pytest.fixture(scope="module")
def digits_run(suite_run):
  return suite_run[1]


def test_suite_writes_the_pictures_beside_its_table_only_when_asked(suite_run):
  from cnn_jax import benchmark

  workdir, train_dir = suite_run
  assert not (train_dir / "visualize").exists()  # off by default
  results = (workdir / "results.jsonl").read_text()
  rows = json.loads((workdir / "table.json").read_text())["rows"]
  benchmark.run_suite(SUITE, "digits", 1, workdir, visualize=True)  # the run is done: skipped
  assert sorted(p.name for p in (train_dir / "visualize").iterdir()) == [
      "feature_maps_0.png", "filters_C1.png", "top_patches_C3.json", "top_patches_C3.png"]
  assert (workdir / "results.jsonl").read_text() == results
  assert json.loads((workdir / "table.json").read_text())["rows"] == rows
  # TensorBoard: the suite's table as text, the run's scalars and now its pictures.
  from test_tensorboard import read_events

  (text,) = read_events(workdir / "tensorboard").Tensors(f"suite/{SUITE}/text_summary")
  assert "vis_lenet5" in text.tensor_proto.string_val[0].decode()
  events = read_events(train_dir / "tensorboard")
  assert sorted(events.Tags()["images"]) == [
      "visualize/feature_maps_0", "visualize/filters_C1", "visualize/top_patches_C3"]
  assert events.Images("visualize/filters_C1")[0].step == events.Scalars("test/loss")[-1].step
  shutil.rmtree(train_dir / "visualize")


def test_cli_writes_the_pictures_and_nothing_else(digits_run, tmp_path):
  before = _tree_hash(digits_run)
  cmd = [sys.executable, "-m", "experiments.visualize"]
  not_a_run = tmp_path / "not_a_run"
  not_a_run.mkdir()
  runs = [subprocess.Popen(cmd + args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
          for args in ([f"--workdir={digits_run}", "--top=5", "--units=4", "--image=3"],
                       [f"--workdir={digits_run}", "--layer=C9"],
                       [f"--workdir={not_a_run}"])]
  (_, ok_err), (_, bad_err), (_, none_err) = [r.communicate(timeout=300) for r in runs]
  assert runs[0].returncode == 0, ok_err
  out = digits_run / "visualize"
  names = sorted(p.name for p in out.iterdir())
  assert names == ["feature_maps_3.png", "filters_C1.png", "top_patches_C3.json",
                   "top_patches_C3.png"]
  for name in names:
    if name.endswith(".png"):
      assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # Drawn again: its TensorBoard file replaces the earlier one.
  assert len(list((digits_run / "tensorboard").glob("*.visualize"))) == 1
  assert runs[1].returncode == 2
  assert bad_err.startswith("error: ") and "'C9'" in bad_err
  assert "C1, S2, C3, S4, C5, F6" in bad_err
  assert runs[2].returncode == 2
  assert "no trained run" in none_err and "experiments.main" in none_err, none_err
  assert list(not_a_run.iterdir()) == []
  assert _tree_hash(digits_run) == before

  # The JSON against a brute-force pass: every activation of one unit, sorted.
  report = json.loads((out / "top_patches_C3.json").read_text())
  assert (report["jump"], report["rf"], report["offset"], report["input_size"]) == (2, 14, 4, 24)
  model, variables, config = Run(digits_run).load_model()
  train, test = load_split("digits", "train"), load_split("digits", "test")
  normalize = Normalization.from_images(train.images, config.data.image_size)
  _, state = model.apply(variables, normalize(jnp.asarray(test.images)),
                         mutable=["intermediates"])
  c3 = np.asarray(state["intermediates"]["C3"][0])  # [N, 10, 10, 16]
  assert len(report["units"]) == 4
  assert report["units"] == sorted(np.argsort(-c3.max(axis=(0, 1, 2)))[:4].tolist())
  unit = report["units"][0]
  patches = [p for p in report["patches"] if p["unit"] == unit]
  assert [p["rank"] for p in patches] == list(range(5))
  np.testing.assert_allclose([p["activation"] for p in patches],
                             np.sort(c3[..., unit].ravel())[::-1][:5], rtol=1e-5)
  for p in patches:
    y, x = p["position"]
    assert c3[p["image"], y, x, unit] == pytest.approx(p["activation"], rel=1e-5)
    assert p["input_box"] == [2 * y - 4, 2 * y + 10, 2 * x - 4, 2 * x + 10]
    assert p["clipped"] == (min(p["input_box"]) < 0 or max(p["input_box"]) > 24)

"""Pictures of what a trained run's units learned, written into WORKDIR/visualize/.

  python -m experiments.visualize --workdir=workdirs/lenet5_fm
  python -m experiments.visualize --workdir=workdirs/lenet5_fm --layer=C1,C3 --units=16 --top=9 \
      --split=test --image=0

Writes, for each --layer (a sown feature; default: the last conv feature with a
map larger than 1x1, C3 for LeNet-5, conv2 for SimpleCNN):
  top_patches_<layer>.png    one row per unit (the --units most active channels), its
                             --top patches over the whole split, each exactly the unit's
                             receptive field; red frame and orange fill: clipped at the border
  top_patches_<layer>.json   per unit and rank: image, position, pixel box, clipped, activation
and once:
  filters_<first conv>.png   the first conv layer's kernels
  feature_maps_<image>.png   every spatial feature of image --image of the split
and adds the PNGs to the run's TensorBoard event files (a new file in WORKDIR/tensorboard/,
unless the run was trained with --config.tensorboard=False). Nothing else in the
workdir is written. See `cnn_jax/visualize.py` for how a unit's position maps to its
pixel box.
"""

from absl import flags

from cnn_jax import visualize
from experiments import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained run of experiments.main.")
flags.DEFINE_list("layer", None, "Sown feature(s) for the top patches, comma-separated "
                  "(default: the last conv feature with a map larger than 1x1).")
flags.DEFINE_integer("units", 16, "Units (channels) per layer: the most active ones.")
flags.DEFINE_integer("top", 9, "Patches per unit.")
flags.DEFINE_string("split", "test", "The split searched (and holding --image).")
flags.DEFINE_integer("image", 0, "Index (in --split) of the image whose feature maps are drawn.")
flags.DEFINE_integer("batch_size", 1000, "Images per batch of the top-patch pass.")


def main(argv):
  del argv
  written = visualize.visualize_run(
      FLAGS.workdir, layers=FLAGS.layer, units=FLAGS.units, top=FLAGS.top, split=FLAGS.split,
      image=FLAGS.image, batch_size=FLAGS.batch_size,
  )
  for path in written:
    print(path)


if __name__ == "__main__":
  cli.run(main, required=("workdir",))

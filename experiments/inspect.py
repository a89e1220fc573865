"""Print a model's layers: output size, stride (jump), receptive field and parameters.

  python -m experiments.inspect --model=vgg16
  python -m experiments.inspect --model=resnet18 --input_size=28 --channels=1 --num_classes=10 \
      --stem=cifar

Nothing is computed (shapes are traced with `jax.eval_shape`), so even VGG-19 at
224x224 prints in about a second. The parameter total is shown beside the
published figure (torchvision's, or the paper's) when the configuration matches it.
"""

from __future__ import annotations

from absl import flags

from cnn_jax.errors import UserError
from cnn_jax.models import create_model
from cnn_jax.models import receptive_field as rf
from experiments import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Registered model name, e.g. resnet18.")
flags.DEFINE_integer(
    "input_size", 0, "Square input size in pixels (0: the model's own, 32 for LeNet-5 and the "
    "CIFAR ResNets, 224 otherwise)."
)
NATIVE_SIZE = {"lenet5": 32, "resnet20": 32, "resnet32": 32, "resnet56": 32}
flags.DEFINE_integer("channels", 3, "Input channels (1 for Fashion-MNIST).")
flags.DEFINE_integer("num_classes", None, "Output classes (default: the model's own).")
flags.DEFINE_string("stem", None, "Stem for models that have one: imagenet or cifar.")

# Published parameter counts: (count, num_classes, channels, source). torchvision's
# figures are at 1,000 classes and 3 channels, with the ImageNet stem.
PUBLISHED_PARAMS = {
    "alexnet": (61_100_840, 1000, 3, "torchvision"),
    "googlenet": (6_624_904, 1000, 3, "torchvision, no aux heads"),
    "vgg11": (132_863_336, 1000, 3, "torchvision"),
    "vgg11_bn": (132_868_840, 1000, 3, "torchvision"),
    "vgg13": (133_047_848, 1000, 3, "torchvision"),
    "vgg13_bn": (133_053_736, 1000, 3, "torchvision"),
    "vgg16": (138_357_544, 1000, 3, "torchvision"),
    "vgg16_bn": (138_365_992, 1000, 3, "torchvision"),
    "vgg19": (143_667_240, 1000, 3, "torchvision"),
    "vgg19_bn": (143_678_248, 1000, 3, "torchvision"),
    "resnet18": (11_689_512, 1000, 3, "torchvision"),
    "resnet34": (21_797_672, 1000, 3, "torchvision"),
    "resnet50": (25_557_032, 1000, 3, "torchvision"),
    "resnet101": (44_549_160, 1000, 3, "torchvision"),
    "resnet152": (60_192_808, 1000, 3, "torchvision"),
    "resnet20": (269_722, 10, 3, "He et al. 2016, option A"),
    "lenet5": (61_706, 10, 1, "LeCun et al. 1998, modern form"),
}


def anchor_line(name: str, model, channels: int, total: int) -> str:
  if name not in PUBLISHED_PARAMS:
    return ""
  count, classes, chans, source = PUBLISHED_PARAMS[name]
  stem = getattr(model, "stem", "imagenet")
  aux = getattr(model, "aux_logits", False)
  if (model.num_classes, channels, stem, aux) != (classes, chans, "imagenet", False):
    return (f"published ({source}): {count:,} at {classes} classes, {chans} channels"
            f"{', ImageNet stem' if hasattr(model, 'stem') else ''}; not comparable here")
  verdict = "equal" if total == count else f"DIFFERENT by {total - count:+,}"
  return f"published ({source}): {count:,} -> {verdict}"


def inspect_model(name: str, input_size: int, channels: int, num_classes: int | None = None,
                  stem: str | None = None) -> str:
  """The report for `create_model(name, ...)` at `[input_size, input_size, channels]`."""
  kwargs = {}
  if num_classes is not None:
    kwargs["num_classes"] = num_classes
  if stem is not None:
    kwargs["stem"] = stem
  model = create_model(name, **kwargs)
  try:
    rep = rf.report(model, input_size, channels)
  except ValueError as e:
    raise UserError(str(e)) from None
  title = f"{name}: input {input_size}x{input_size}x{channels}, {model.num_classes} classes"
  if hasattr(model, "stem"):
    title += f", stem={model.stem}"
  lines = [title, rf.format_report(rep)]
  anchor = anchor_line(name, model, channels, rep.total_params)
  if anchor:
    lines.append(anchor)
  return "\n".join(lines)


def main(argv):
  del argv
  size = FLAGS.input_size or NATIVE_SIZE.get(FLAGS.model, 224)
  channels = FLAGS.channels if FLAGS.model != "lenet5" or FLAGS["channels"].present else 1
  print(inspect_model(FLAGS.model, size, channels, FLAGS.num_classes, FLAGS.stem))


if __name__ == "__main__":
  cli.run(main, required=("model",))

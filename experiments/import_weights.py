"""Import weights trained elsewhere as a run directory that every reader of a run reads.

  python -m experiments.import_weights --source=torchvision --model=resnet50 \\
      --checkpoint=resnet50.pth --workdir=workdirs/resnet50_tv [--image_size=224]
  python -m experiments.probe --dataset=cifar10 --features=cnn --workdir=workdirs/resnet50_tv \\
      --config.cnn.layer=pooled
  python -m experiments.main --config=configs/resnet18_cifar10.py --workdir=workdirs/r18_ft \\
      --config.init_from=workdirs/resnet18_tv

--checkpoint is a torchvision state dict (`torch.save(model.state_dict(), path)`, or a
file of torchvision's pretrained weights) of the same architecture as --model:
resnet18/34/50/101/152, vgg11/13/16/19[_bn], alexnet or googlenet. Reading it needs
PyTorch, an optional extra: pip install -e '.[torch]'. See cnn_jax/train/import_weights.py
and cnn_jax/models/torchvision_import.py.
"""

import json

from absl import flags

from cnn_jax.train import import_weights
from experiments import cli

FLAGS = flags.FLAGS
flags.DEFINE_enum("source", "torchvision", import_weights.SOURCES.names(),
                  "Where the weights come from.")
flags.DEFINE_string("model", None, "Our registered model with the source's layout, e.g. resnet50.")
flags.DEFINE_string("checkpoint", None, "The weights file, e.g. resnet50.pth.")
flags.DEFINE_string("workdir", None, "New directory for config.json and the checkpoint.")
flags.DEFINE_integer("image_size", 224, "config.data.image_size of the run: the size images are "
                     "resized to when it is probed or fine-tuned (0 keeps a data set's size).")


def main(argv):
  del argv
  run = import_weights.import_weights(FLAGS.source, FLAGS.model, FLAGS.checkpoint, FLAGS.workdir,
                                      image_size=FLAGS.image_size)
  print(json.dumps({"workdir": str(run.path), "model": run.read_config().model.to_dict()}))


if __name__ == "__main__":
  cli.run(main, required=("model", "checkpoint", "workdir"))

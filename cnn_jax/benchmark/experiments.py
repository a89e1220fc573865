"""The registered experiments and suites (one place: add a row here).

Probe rows name an extractor and a probe (their parameters for each data set come
from the data set's entry, `cnn_jax.data.datasets`); training rows name the
config file a user would run with `experiments.main`.
"""

from __future__ import annotations

from cnn_jax.benchmark.registry import Experiment, register, register_suite

# An RBF SVM costs O(N^2): on the 60,000 Fashion-MNIST images it fits for about half an
# hour on 2 CPU cores, so the suite trains it on a fixed random subset (from the seed).
SVM_MAX_TRAIN = 20_000

for name, kind, representation, features, probe, uses_seed in [
    ("raw", "engineered", "standardised pixels", "raw", {}, False),
    ("hog", "engineered", "HOG, 9 orientations, L2-Hys", "hog", {}, False),
    ("hog_svm", "engineered", "HOG + RBF SVM (C=10; <= 20k train)", "hog",
     {"name": "svm", "max_train": SVM_MAX_TRAIN}, False),
    ("lbp", "engineered", "LBP (8,1) uniform, cell histograms", "lbp", {}, False),
    ("gabor", "engineered", "Gabor bank, magnitude, pooled", "gabor", {}, False),
    ("random_conv", "random", "random conv-ReLU-pool (untrained)", "random_conv", {}, True),
    ("kmeans", "unsupervised", "k-means patches, triangle, quadrant pool", "kmeans", {}, True),
]:
  register(Experiment(
      name=name, kind=kind, representation=representation, features={"name": features},
      probe={"name": "linear", **probe}, uses_seed=uses_seed,
  ))

# Training recipes: configs/<model>_<dataset>.py; 28x28 data sets without one of their
# own (MNIST) use the Fashion-MNIST recipe.
register(Experiment(
    name="simple_cnn", kind="learned", representation="2 conv + pool CNN, end to end",
    recipe="configs/simple_cnn_{dataset}.py",
    fallback_recipe="configs/simple_cnn_fashion_mnist.py", anchor="two_conv",
))
register(Experiment(
    name="lenet5", kind="learned", representation="LeNet-5, end to end",
    recipe="configs/lenet5_{dataset}.py", fallback_recipe="configs/lenet5_fashion_mnist.py",
    anchor="lenet5",
))
# The strongest learned row: a compact residual CNN trained like the fast CIFAR-10 recipes
# (bf16, one-cycle SGD, label smoothing, crops + flips); no published anchor on these
# data sets (airbench's 94% in 3.3 s is a CIFAR-10 figure). Its recipe is tuned for 28x28
# images and 60,000 of them (batch 512): the digits' main job leaves it out.
register(Experiment(
    name="speedrun", kind="learned", representation="compact ResNet, bf16, crops + flips",
    recipe="configs/speedrun_{dataset}.py",
    fallback_recipe="configs/speedrun_fashion_mnist.py", anchor="",
    datasets=("fashion_mnist", "mnist"),
))
register(Experiment(
    name="lenet5_frozen", kind="learned", representation="frozen LeNet-5 F6 + linear probe",
    features={"name": "cnn", "layer": "F6"}, needs="lenet5",
))

# Local connectivity and parameter sharing, taken away one at a time from the same
# topology (cnn_jax/models/sharing_net.py), each scored on test images moved by 1, 2, 4 px.
for connectivity, representation in [
    ("conv", "conv: local, shared kernels"),
    ("local", "locally connected: local, unshared"),
    ("dense", "dense: global, unshared"),
]:
  register(Experiment(
      name=f"sharing_{connectivity}", kind="learned", representation=representation,
      recipe="configs/parameter_sharing_{dataset}.py",
      overrides={"model.connectivity": connectivity}, shifts=(1, 2, 4),
  ))

register_suite("features_vs_learned", (
    "raw", "hog", "hog_svm", "lbp", "gabor", "random_conv", "kmeans",
    "simple_cnn", "lenet5", "lenet5_frozen", "speedrun",
))
register_suite("engineered", ("raw", "hog", "hog_svm", "lbp", "gabor"))
register_suite("smoke", ("raw", "hog", "lenet5", "lenet5_frozen"))


# Greedy layer-wise pre-training (Bengio et al. 2007): for a deep MLP and a conv stack,
# pre-trained (denoising autoencoders on every training image, no labels) + fine-tuned,
# against the same network from random initialisation and against a linear probe on the
# frozen pre-trained stack, at three labelled-set sizes. Every fine-tuning run makes the
# same number of updates (FINETUNE_STEPS of FINETUNE_BATCH: 2 epochs of 60,000), so the
# rows differ only in the labels they see; the test split is evaluated twice per run.
LABELLED_SIZES = (600, 6_000, 60_000)
FINETUNE_STEPS, FINETUNE_BATCH = 1_200, 100
PRETRAIN_EPOCHS = 3  # per layer

for arch, title, recipe, top in [
    ("mlp", "MLP 784-1000-1000-1000-10", "configs/mlp_{dataset}.py", "fc3"),
    ("convs", "conv stack 2x(5x5 conv, pool)", "configs/conv_stack_{dataset}.py", "conv2"),
]:
  register(Experiment(
      name=f"{arch}_pretrain", kind="unsupervised",
      representation=f"{title}: greedy layer-wise denoising autoencoders",
      recipe=recipe, pretrain={"epochs": PRETRAIN_EPOCHS},
  ))
  for n in LABELLED_SIZES:
    epochs = FINETUNE_STEPS * FINETUNE_BATCH // n
    budget = {"num_epochs": epochs, "eval_every_epochs": max(1, epochs // 2),
              "batch_size": FINETUNE_BATCH}
    register(Experiment(
        name=f"{arch}_scratch_{n}", kind="learned",
        representation=f"{title}, random init, {n:,} labels", recipe=recipe,
        overrides=budget, labels=n, group=f"{title}: random init",
    ))
    register(Experiment(
        name=f"{arch}_finetuned_{n}", kind="learned",
        representation=f"{title}, pre-trained + fine-tuned, {n:,} labels", recipe=recipe,
        overrides=budget, labels=n, needs=f"{arch}_pretrain",
        group=f"{title}: pre-trained + fine-tuned",
    ))
    register(Experiment(
        name=f"{arch}_frozen_{n}", kind="unsupervised",
        representation=f"{title}, frozen pre-trained {top} + linear probe, {n:,} labels",
        features={"name": "cnn", "layer": top}, needs=f"{arch}_pretrain", labels=n,
        group=f"{title}: frozen pre-trained + linear probe", anchor="",
    ))

register_suite("layerwise_pretraining", tuple(
    name for arch in ("mlp", "convs") for name in (
        f"{arch}_pretrain",
        *(f"{arch}_{how}_{n}" for n in LABELLED_SIZES for how in ("scratch", "finetuned", "frozen")),
    )
))
# How much of sharing's translation robustness does training on shifted images buy
# back? The same conv and dense nets trained with random shifts of up to 4 px (as far as
# the largest test shift). The locally connected net is left out: on 2 CPU cores it
# costs more than the rest of the suite together.
for connectivity in ("conv", "dense"):
  register(Experiment(
      name=f"sharing_{connectivity}_shift_aug", kind="learned",
      representation=f"{connectivity}, trained on random shifts <= 4 px",
      recipe="configs/parameter_sharing_{dataset}.py",
      overrides={"model.connectivity": connectivity, "data.augment": ("translate(max=4)",)},
      shifts=(1, 2, 4),
  ))

register_suite("parameter_sharing", (
    "sharing_conv", "sharing_local", "sharing_dense", "sharing_conv_shift_aug",
    "sharing_dense_shift_aug",
))

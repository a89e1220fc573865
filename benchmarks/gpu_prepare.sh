#!/usr/bin/env bash
# What a GPU lease carries, prepared here before the lease starts (no device time):
#   bash benchmarks/gpu_prepare.sh [KINDS.md]
# * .whl/: wheels (CPython 3.12, manylinux x86_64) of every package the project needs that
#   the GPU image lacks, at the versions installed here (the project's dependency tree,
#   read from this environment's metadata; the image's package list from the device notes,
#   KINDS.md's "Packages:" line). A binary wheel where PyPI has one for 3.12, else a wheel
#   built here (pure-Python sdists such as promise).
# * .gpudata/: Fashion-MNIST's four .gz files from Debian's dataset-fashion-mnist
#   (benchmarks/gpu_session.sh points $CNN_JAX_DATA there).
# Both folders are git-ignored (.git/info/exclude), so they travel only when named in the
# lease's `carry` (64 MiB in all with the working tree; sizes are printed at the end).
# Then: run(command="GPU_SESSION_SECONDS=530 bash benchmarks/gpu_session.sh",
#           carry=[".whl", ".gpudata"], timeout_s=580).
set -euo pipefail
cd "$(dirname "$0")/.."
KINDS=${1:-/work/.library/device/KINDS.md}
PY=${PYTHON:-.venv/bin/python}
[ -f "$KINDS" ] || {
  echo "No device notes at $KINDS: pass the path of KINDS.md (its 'Packages:' line lists what the GPU image holds)." >&2
  exit 2
}
ls /usr/share/datasets/fashion-mnist/*-ubyte.gz > /dev/null 2>&1 || {
  echo "Fashion-MNIST is not installed: run scripts/apt-install dataset-fashion-mnist first." >&2
  exit 2
}

for d in /.whl/ /.gpudata/; do
  grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude
done
rm -rf .whl .gpudata && mkdir -p .whl .gpudata
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .gpudata/

# The project's own dependencies (not its extras: the image holds pytest, scipy,
# scikit-image, tensorboard, torch and torchvision) and theirs, as installed here.
"$PY" - "$KINDS" <<'PYTHON'
import importlib.metadata as md
import pathlib
import re
import subprocess
import sys

from pip._vendor.packaging.requirements import Requirement  # pip is in every venv

norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731 - PEP 503 names
line = next(x for x in pathlib.Path(sys.argv[1]).read_text().splitlines() if "Packages:" in x)
image = {norm(p.strip(" .")) for p in line.split("Packages:", 1)[1].split(",")}
target = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython",
          "extra": ""}
needed, todo = {}, ["cnn_jax"]
while todo:
  dist = md.distribution(todo.pop())
  for spec in dist.requires or []:
    req = Requirement(spec)
    if (req.marker and not req.marker.evaluate(target)) or norm(req.name) in needed:
      continue
    try:
      needed[norm(req.name)] = md.version(req.name)
    except md.PackageNotFoundError:
      sys.exit(f"{req.name} (needed by {dist.metadata['Name']}) is not installed here: "
               "install the project first (the README's set-up command).")
    todo.append(req.name)
missing = sorted(n for n in needed if n not in image)
platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)]
pip = [sys.executable, "-m", "pip", "-q"]
for name in missing:
  pin = f"{name}=={needed[name]}"
  got = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "-d", ".whl",
                        "--python-version=3.12", "--implementation=cp", *platforms,
                        "--platform=manylinux2014_x86_64", "--platform=manylinux1_x86_64", pin],
                       capture_output=True, text=True)
  if got.returncode != 0:  # no 3.12 wheel on the index: build one (pure Python only)
    subprocess.run([*pip, "wheel", "--no-deps", "-w", ".whl", pin], check=True,
                   capture_output=True)
wheels = sorted(p.name for p in pathlib.Path(".whl").glob("*.whl"))
native = [w for w in wheels if not w.endswith("-none-any.whl") and "cp312" not in w
          and "abi3" not in w]
if native:
  sys.exit(f"Built for this machine's Python, not the image's 3.12: {native}")
print(f"{len(needed)} dependencies, {len(needed) - len(missing)} already in the image; "
      f"{len(wheels)} wheels for the rest:", *wheels, sep="\n  ")
PYTHON
du -sh .whl .gpudata

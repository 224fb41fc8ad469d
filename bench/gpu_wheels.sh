#!/usr/bin/env bash
# Wheels for bench/gpu_check.sh on a GPU machine without network: run this where PyPI is reachable, then
# bring .whl/ along (gpu_check.sh installs what it finds there before anything else).
#
#   bench/gpu_wheels.sh [IMAGE_PACKAGES] [PYTHON_VERSION]
#
# It takes zhkd's run-time dependencies as this checkout's .venv resolved them (names and versions, extras
# left out, and nothing below a package the image has), drops those the GPU image already has (IMAGE_PACKAGES: one name a line, default
# bench/gpu_image_packages.txt, as read on the lent machines) and downloads the rest for that machine's
# Python (default 3.12, x86-64 manylinux), without their own dependencies (the list already holds them).
# torch, numpy, pyarrow and transformers come from the image: a call to the device machine carries 64 MiB
# at most, and these wheels (about 58 MB: Beam and jieba's dictionaries are 19 MB each) plus the checkout
# fit only without transformers (13.5 MB). The image's transformers was 5.17 when read, below zhkd's floor
# of 5.24; gpu_check.sh records the versions that ran in its first JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-bench/gpu_image_packages.txt}
python_version=${2:-3.12}
[[ -x .venv/bin/python ]] || { echo "gpu_wheels: needs the project's .venv (make .venv/.installed-dev)" >&2; exit 2; }

mapfile -t wanted < <(.venv/bin/python - "$image" <<'EOF'
import importlib.metadata as md
import re
import sys

from packaging.requirements import Requirement

def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()

have = {key(line.strip()) for line in open(sys.argv[1]) if line.strip() and not line.startswith("#")}
seen = {}

def walk(name):
    if key(name) in seen:
        return
    dist = md.distribution(name)
    seen[key(name)] = dist.version
    if key(name) in have:
        return  # the image's own copy brings what it needs
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            walk(requirement.name)

walk("zhkd")
for name, version in sorted(seen.items()):
    if name != "zhkd" and name not in have:
        print(f"{name}=={version}")
EOF
)
mkdir -p .whl
platforms=()
for n in 17 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
for requirement in "${wanted[@]}"; do
  # A wheel for that Python and platform, else any pure-Python wheel, else the source (jieba has only that).
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
      "${platforms[@]}" --platform manylinux2014_x86_64 -d .whl "$requirement" 2>/dev/null \
    || .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" -d .whl \
      "$requirement" 2>/dev/null \
    || .venv/bin/python -m pip download -q --no-deps --no-binary=:all: -d .whl "$requirement"
done
ls -1 .whl
du -sh .whl

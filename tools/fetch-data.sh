#!/usr/bin/env bash
# Downloads CIFAR-10 (binary version) and the published CIFAR-10 checkpoints into a folder laid
# out like ../shared (data/cifar-10-batches-bin, models/{akamaster,chenyaofo}), then checks them.
# Usage: tools/fetch-data.sh [DEST]   (default: ../shared next to this repository)
set -euo pipefail
dest=${1:-"$(cd "$(dirname "$0")/../.." && pwd)/shared"}
mkdir -p "$dest/data" "$dest/models/akamaster" "$dest/models/chenyaofo"

fetch() { # url file
  [ -s "$2" ] && return 0
  echo "downloading $1"
  curl -fL --retry 3 -o "$2.part" "$1" && mv "$2.part" "$2"
}

fetch https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz "$dest/data/cifar-10-binary.tar.gz"
tar -xzf "$dest/data/cifar-10-binary.tar.gz" -C "$dest/data"

aka=https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models
for f in resnet20-12fca82f.th resnet32-d509ac18.th resnet44-014dd654.th resnet56-4bfd9763.th; do
  fetch "$aka/$f" "$dest/models/akamaster/$f"
done

cy=https://github.com/chenyaofo/pytorch-cifar-models/releases/download
for f in resnet/cifar10_resnet20-4118986f.pt resnet/cifar10_resnet56-187c023a.pt \
         shufflenetv2/cifar10_shufflenetv2_x0_5-1308b4e9.pt shufflenetv2/cifar10_shufflenetv2_x2_0-ec31611c.pt \
         vgg/cifar10_vgg16_bn-6ee7ea24.pt mobilenetv2/cifar10_mobilenetv2_x1_4-3bbbd6e2.pt \
         repvgg/cifar10_repvgg_a2-09488915.pt; do
  fetch "$cy/$f" "$dest/models/chenyaofo/$(basename "$f")"
done

# Each published file name carries the first 8 hex digits of its sha256.
for f in "$dest"/models/*/*.th "$dest"/models/*/*.pt; do
  want=$(basename "$f" | sed -E 's/.*-([0-9a-f]{8})\.(th|pt)$/\1/')
  got=$(sha256sum "$f" | cut -c1-8)
  [ "$want" = "$got" ] || { echo "checksum mismatch: $f ($got, expected $want)"; exit 1; }
done
echo "done: $dest"

#!/usr/bin/env bash
# Builds the image whose `nft` the agents run to keep a node's firewall to the TaskRunPolicy's
# deniedEgressCIDRs (`--firewall-image`), without pulling anything: Debian's nft and the
# libraries it links, FROM scratch. Does nothing when the image exists. Prints the image name.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

image="${TASKRUN_FIREWALL_IMAGE:-taskrun-firewall:dev}"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  if ! dpkg -s nftables >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "the firewall image needs Debian's nftables and installing it needs root"
    log "installing Debian's nftables"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables >/dev/null
  fi
  log "building $image from Debian's nft"
  context="$(mktemp -d)"
  trap 'rm -rf "$context"' EXIT
  nft="$(command -v nft || echo /usr/sbin/nft)"
  mkdir -p "$context/root/usr/sbin"
  cp "$nft" "$context/root/usr/sbin/nft"
  # Every library nft links, at the path the loader looks for it.
  for library in $(ldd "$nft" | grep -oE '/[^ ]+'); do
    mkdir -p "$context/root$(dirname "$library")"
    cp -L "$library" "$context/root$library"
  done
  cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENTRYPOINT []
CMD ["nft", "--version"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t "$image" "$context" >/dev/null
fi
echo "$image"

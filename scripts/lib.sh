# Shared by scripts/*.sh: make sure the tools the project needs are here.
# Sourced, not run.

# need_packages installs the Debian/Ubuntu packages whose commands are
# missing. Arguments are pairs: command package.
need_packages() {
	export PATH="$PATH:/usr/sbin:/sbin"
	local missing=()
	while [ $# -ge 2 ]; do
		command -v "$1" >/dev/null 2>&1 || missing+=("$2")
		shift 2
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	echo "installing ${missing[*]} ..." >&2
	# apt, debconf, needrestart and perl talk a lot ("debconf: delaying
	# package configuration", needrestart's kernel and service notices,
	# locale warnings): keep it in a log, shown only when the install fails.
	local log quiet
	log=$(mktemp)
	quiet=(env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes NEEDRESTART_MODE=a
		NEEDRESTART_SUSPEND=1 LC_ALL=C LANG=C LANGUAGE=)
	if ! { $sudo "${quiet[@]}" apt-get update -qq &&
		$sudo "${quiet[@]}" apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}"; } >"$log" 2>&1; then
		echo "installing ${missing[*]} failed; apt's output:" >&2
		cat "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

# need_go makes sure a Go toolchain able to build this module is on PATH:
# Go 1.21+ fetches the version go.mod asks for by itself (GOTOOLCHAIN).
need_go() {
	export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin:/usr/sbin:/sbin"
	if ! command -v go >/dev/null 2>&1; then
		need_packages go golang-go
	fi
	local minor
	minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
	if [ "${minor:-0}" -lt 21 ]; then
		echo "Go $(go env GOVERSION) is too old to fetch the toolchain this module needs;" >&2
		echo "install Go 1.26 or newer from https://go.dev/dl/ and run again." >&2
		exit 1
	fi
	export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
}

# need_mailpit makes sure mailpit, the mail catcher the stack runs (and
# its test reads), is on PATH: go install'ed once into $(go env GOPATH)/bin,
# which need_go puts on PATH.
need_mailpit() {
	command -v mailpit >/dev/null 2>&1 && return 0
	echo "installing mailpit, the local mail catcher (once, about a minute) ..." >&2
	GOFLAGS=-mod=mod go install github.com/axllent/mailpit@v1.33.1
}

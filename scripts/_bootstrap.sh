# Shared by scripts/serve and scripts/test: install what Hangar needs on a Debian host.
# Sourced, not run. Every step is skipped when its work is already done.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root (run as root or install sudo)" >&2
        return 1
    fi
}

_apt_updated=0
apt_install() {
    # apt_install PACKAGE...: install the packages that are not installed yet.
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "warning: cannot install ${missing[*]} (no apt-get); install them yourself" >&2
        return 0
    fi
    echo "==> apt-get install ${missing[*]}" >&2
    if [ "$_apt_updated" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        _apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
}

ensure_uv() {
    # uv from PATH, else the copy pip installs into ~/.local/bin (from PyPI).
    export PATH="$HOME/.local/bin:$PATH"
    command -v uv >/dev/null 2>&1 && return 0
    echo "==> installing uv from PyPI" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    # Debian marks its Python "externally managed"; a --user install of one tool is safe.
    python3 -m pip install --user --quiet --break-system-packages uv 2>/dev/null \
        || python3 -m pip install --user --quiet uv
    command -v uv >/dev/null 2>&1 || { echo "error: uv did not install" >&2; return 1; }
}

ensure_host_packages() {
    # What host agents use to run sandboxes (bubblewrap jails, debootstrap templates, networking,
    # size-limited disks: mkfs.ext4, losetup, nsenter; per-sandbox user namespaces: unshare,
    # setpriv; the seccomp filter: libseccomp).
    apt_install bubblewrap debootstrap nftables iproute2 ca-certificates e2fsprogs util-linux mount \
        libseccomp2
}

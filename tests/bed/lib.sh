# shellcheck shell=bash
# Shared by the test-bed scripts. Source it; it defines functions only.

# Print every URI in the host's apt sources, deb822 and one-line formats alike.
host_apt_uris() {
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] && files+=("$f")
  done
  [[ ${#files[@]} -eq 0 ]] && return 0
  awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }
       /^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
    "${files[@]}"
}

# The Debian mirror the host uses (TSH_DEBIAN_MIRROR overrides).
debian_mirror() {
  echo "${TSH_DEBIAN_MIRROR:-$(host_apt_uris | awk '!/security/ { print; exit }')}"
}

# The Debian security mirror the host uses (TSH_DEBIAN_SECURITY_MIRROR overrides).
debian_security_mirror() {
  local sec="${TSH_DEBIAN_SECURITY_MIRROR:-$(host_apt_uris | awk '/security/ { print; exit }')}"
  [[ -n $sec ]] || sec="$(debian_mirror)"; sec="${sec%/debian}"
  [[ $sec == */debian-security ]] && echo "$sec" || echo "$sec/debian-security"
}

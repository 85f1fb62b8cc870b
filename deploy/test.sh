#!/usr/bin/env bash
# THE test command (the README's `bash deploy/test.sh`; CI runs it through .ci/run).
#
#   bash deploy/test.sh [pytest arguments...]
#
# As root on Debian it first installs what the tests need from the system: tshark (for
# pyshark and the differential tests), tcpreplay, iproute2 and libpcap, plus curl,
# unzip and a JDK for the Elasticsearch that deploy/elasticsearch.sh installs. Then it
# installs icsmon with its test extras, starts Elasticsearch on 127.0.0.1, runs pytest
# with the given arguments and stops Elasticsearch again. The exit status is pytest's,
# except that a run collecting no tests (pytest status 5) fails: testing nothing is not
# a pass.
#
# Environment: ICSMON_PYTHON (default: python3 on PATH), plus the ICSMON_ES_* variables
# of deploy/elasticsearch.sh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
readonly PYTHON="${ICSMON_PYTHON:-python3}"
readonly SYSTEM_PACKAGES=(tshark tcpreplay iproute2 libpcap0.8 curl unzip ca-certificates)

say() { echo "test.sh: $*" >&2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# A JDK with javac: Elasticsearch runs on it, and deploy/elasticsearch-esql.sh compiles a
# small module with it.
have_jdk() {
    local home
    for home in "${ES_JAVA_HOME:-}" "${JAVA_HOME:-}"; do
        [[ -n $home && -x $home/bin/javac ]] && return 0
    done
    command -v javac >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/jvm/*/bin/javac' >/dev/null
}

# The newest OpenJDK this Debian release offers (Elasticsearch 8 needs >= 17).
jdk_package() {
    local package
    for package in openjdk-25-jdk-headless openjdk-21-jdk-headless openjdk-17-jdk-headless; do
        if apt-cache show "$package" >/dev/null 2>&1; then
            echo "$package"
            return
        fi
    done
    return 1
}

install_system_packages() {
    local package missing=() need_jdk=0
    for package in "${SYSTEM_PACKAGES[@]}"; do
        installed "$package" || missing+=("$package")
    done
    # A fresh Debian has python3 without pip; only fill that in for the default python3.
    if [[ -z ${ICSMON_PYTHON:-} ]] && ! python3 -m pip --version >/dev/null 2>&1; then
        missing+=(python3 python3-pip)
    fi
    have_jdk || need_jdk=1
    if ((${#missing[@]} == 0 && need_jdk == 0)); then
        say "system packages already installed: ${SYSTEM_PACKAGES[*]}"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    # tshark's package asks whether non-root users may capture; answer no, unattended.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update
    if ((need_jdk)); then
        package=$(jdk_package) || { say "error: no openjdk-{25,21,17}-jdk-headless in the apt sources"; exit 1; }
        missing+=("$package")
    fi
    say "installing ${missing[*]}"
    apt-get install -y --no-install-recommends "${missing[@]}"
}

es_started_here=0

stop_elasticsearch() {
    local status=$?
    if ((es_started_here)); then
        bash "$REPO/deploy/elasticsearch.sh" stop || say "warning: stopping Elasticsearch failed"
    fi
    exit "$status"
}

main() {
    cd "$REPO"
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        install_system_packages
        # Debian marks its python3 as externally managed (PEP 668); as root on a CI machine
        # that exists only for this run, installing into it is what we want.
        export PIP_BREAK_SYSTEM_PACKAGES=1
    else
        say "not root on Debian: skipping apt-get; tests need ${SYSTEM_PACKAGES[*]} and a JDK >= 17 installed"
    fi

    "$PYTHON" -m pip install --disable-pip-version-check --progress-bar off -e ".[test]"
    # The pySigma plugin (pipeline `icsmon`, offline ATT&CK for ICS validators) for plain
    # `sigma convert -p icsmon` and `sigma check`; pySigma < 2 finds plugins only as modules.
    "$PYTHON" -m pip install --disable-pip-version-check --progress-bar off ./analyzer/sigma/plugin

    # A node that was already running (a developer's) is used and left running.
    if ! bash deploy/elasticsearch.sh status >/dev/null 2>&1; then
        es_started_here=1
    fi
    trap stop_elasticsearch EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    bash deploy/elasticsearch.sh start
    ICSMON_TEST_ES_URL=$(bash deploy/elasticsearch.sh url)
    export ICSMON_TEST_ES_URL

    local status=0
    "$PYTHON" -m pytest "$@" || status=$?
    if ((status == 5)); then
        say "error: pytest collected no tests (exit status 5); a run that tests nothing is not a pass"
        exit 1
    fi
    exit "$status"
}

main "$@"

#!/usr/bin/env bash
# A real, single-node Elasticsearch for icsmon development and CI.
#
#   bash deploy/elasticsearch.sh install   download (once, sha1-checked) and unpack
#   bash deploy/elasticsearch.sh start     install if needed, start, wait for health yellow/green
#   bash deploy/elasticsearch.sh stop      stop the node this script started and wait for it to exit
#   bash deploy/elasticsearch.sh status    exit 0 if running, 3 if not
#   bash deploy/elasticsearch.sh url       print the HTTP URL (what tests read as ICSMON_TEST_ES_URL)
#
# The distribution is org.elasticsearch.distribution.integ-test-zip:elasticsearch from
# Maven Central: the one Elasticsearch build published there, checksummed and on a CDN.
# It is the plain server with x-pack core and security, without a bundled JDK, so a
# system JDK is chosen (see choose_java). deploy/elasticsearch-esql.sh adds ES|QL to it
# from the plugin jars Maven Central also has; those are assembled for one version,
# 8.19.21 (the newest 8.x there; Maven Central has no 9.x under that coordinate), which
# is therefore the default.
#
# Environment (all optional):
#   ICSMON_ES_VERSION        version to use (default 8.19.21; another has no ES|QL)
#   ICSMON_ES_HOME           holds the download, the unpacked distribution, config, data
#                            and logs (default ~/.cache/icsmon/elasticsearch-<version>;
#                            as root /var/cache/icsmon/elasticsearch-<version>, because the
#                            service user cannot enter /root, which is mode 0700)
#   ICSMON_ES_PORT           HTTP port on 127.0.0.1 (default 9200)
#   ICSMON_ES_HEAP           JVM heap, -Xms and -Xmx (default 512m)
#   ICSMON_ES_START_TIMEOUT  seconds `start` waits for health yellow (default 120)
#   ICSMON_ES_STOP_TIMEOUT   seconds `stop` waits before SIGKILL (default 60)
#   ES_JAVA_HOME, JAVA_HOME  the JDK to run on (default: see choose_java)
#
# Elasticsearch refuses to run as root. When this script runs as root (CI does) it
# creates the system user icsmon-es and runs the node as that user.
set -euo pipefail

readonly MAVEN_BASE="https://repo1.maven.org/maven2/org/elasticsearch/distribution/integ-test-zip/elasticsearch"
readonly DEFAULT_VERSION="8.19.21"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly ES_USER="icsmon-es"
readonly CLUSTER_NAME="icsmon-dev"
readonly PORT="${ICSMON_ES_PORT:-9200}"
readonly URL="http://127.0.0.1:${PORT}"
readonly HEAP="${ICSMON_ES_HEAP:-512m}"
readonly START_TIMEOUT="${ICSMON_ES_START_TIMEOUT:-120}"
readonly STOP_TIMEOUT="${ICSMON_ES_STOP_TIMEOUT:-60}"

info() { echo "elasticsearch.sh: $*" >&2; }
die() { echo "elasticsearch.sh: error: $*" >&2; exit 1; }

is_root() { [[ $(id -u) -eq 0 ]]; }

require_tools() {
    local tool missing=()
    for tool in curl unzip sha1sum; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing ${missing[*]}: install them (Debian: apt-get install curl unzip coreutils ca-certificates)"
}

# Downloads and node state live outside the repository so a fresh clone works and
# `git clean` never throws away a 100 MB download.
cache_root() {
    if is_root; then
        echo /var/cache/icsmon
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/icsmon"
    fi
}

home_for() { echo "${ICSMON_ES_HOME:-$(cache_root)/elasticsearch-$1}"; }

resolve_version() { echo "${ICSMON_ES_VERSION:-$DEFAULT_VERSION}"; }

sha1_of() { sha1sum "$1" | cut -d' ' -f1; }

# Fetch the zip once into $home/downloads; both a cached and a fresh copy must match
# the .sha1 that Maven Central publishes next to it.
download() {
    local version=$1 home=$2
    local name="elasticsearch-$version.zip"
    local zip="$home/downloads/$name" sum="$home/downloads/$name.sha1" expected
    mkdir -p "$home/downloads"
    if [[ ! -s $sum ]]; then
        curl -fsSL --retry 3 --connect-timeout 10 -o "$sum.part" "$MAVEN_BASE/$version/$name.sha1" \
            || die "cannot download $MAVEN_BASE/$version/$name.sha1 (is $version published?)"
        mv "$sum.part" "$sum"
    fi
    expected=$(cut -c1-40 "$sum")
    if [[ -f $zip && $(sha1_of "$zip") == "$expected" ]]; then
        info "using cached $zip"
        return
    fi
    info "downloading $MAVEN_BASE/$version/$name"
    curl -fsSL --retry 3 --connect-timeout 10 -o "$zip.part" "$MAVEN_BASE/$version/$name" \
        || die "cannot download $MAVEN_BASE/$version/$name"
    local actual
    actual=$(sha1_of "$zip.part")
    if [[ $actual != "$expected" ]]; then
        rm -f "$zip.part"
        die "$name: sha1 $actual does not match the published $expected"
    fi
    mv "$zip.part" "$zip"
}

# Prints the unpacked distribution directory.
install() {
    local version=$1 home=$2
    local dist="$home/dist/elasticsearch-$version"
    require_tools
    if [[ ! -e $dist/.icsmon-installed ]]; then
        download "$version" "$home"
        rm -rf "$dist" "$dist.unpack"
        mkdir -p "$dist.unpack"
        unzip -q "$home/downloads/elasticsearch-$version.zip" -d "$dist.unpack"
        [[ -x $dist.unpack/elasticsearch-$version/bin/elasticsearch ]] \
            || die "elasticsearch-$version.zip has no elasticsearch-$version/bin/elasticsearch"
        mv "$dist.unpack/elasticsearch-$version" "$dist"
        rmdir "$dist.unpack"
        # The service user only reads the distribution, whatever our umask was.
        chmod -R go+rX,go-w "$home/dist"
        touch "$dist/.icsmon-installed"
        info "installed Elasticsearch $version in $dist"
    fi
    echo "$dist"
}

java_major() {
    "$1/bin/java" -XshowSettings:properties -version 2>&1 \
        | awk -F' = ' '/java.specification.version/ {print $2; exit}'
}

# Whether this Elasticsearch accepts the JDK, asked with the checker bin/elasticsearch runs.
java_accepted() {
    local jdk=$1 dist=$2
    [[ -x $jdk/bin/java ]] || return 1
    [[ -d $dist/lib/java-version-checker ]] || return 0
    "$jdk/bin/java" -cp "$dist/lib/java-version-checker/*" \
        org.elasticsearch.tools.java_version_checker.JavaVersionChecker >/dev/null 2>&1
}

# The integ-test zip has no bundled JDK. ES_JAVA_HOME, then JAVA_HOME, are honoured as
# given. Otherwise every JDK under /usr/lib/jvm (and the `java` on PATH) is tried, newest
# first, and the first one Elasticsearch accepts wins. Tried on the CI image with
# 8.19.21: OpenJDK 17 and Temurin 25 both start it and pass the tests (8 to 18 s to
# green on 2 cores, with no difference between them); the newest wins because
# Elastic ships its own archives with a current bundled JDK, and Elasticsearch 9
# refuses anything older than 21.
choose_java() {
    local dist=$1 var jdk candidates=() seen=" "
    for var in ES_JAVA_HOME JAVA_HOME; do
        jdk=${!var:-}
        [[ -n $jdk ]] || continue
        java_accepted "$jdk" "$dist" || die "$var=$jdk is not a JDK Elasticsearch $(basename "$dist") accepts"
        echo "$jdk"
        return
    done
    local on_path=()
    if command -v java >/dev/null 2>&1; then
        on_path=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
    fi
    for jdk in /usr/lib/jvm/*/ "${on_path[@]}"; do
        jdk=$(readlink -f "$jdk") || continue
        [[ -x $jdk/bin/java && $seen != *" $jdk "* ]] || continue
        seen+="$jdk "
        candidates+=("$(java_major "$jdk") $jdk")
    done
    while read -r _ jdk; do
        if [[ -n $jdk ]] && java_accepted "$jdk" "$dist"; then
            echo "$jdk"
            return
        fi
    done < <(printf '%s\n' "${candidates[@]}" | sort -rn)
    die "no JDK that Elasticsearch $(basename "$dist") accepts (looked in /usr/lib/jvm and PATH); install one (Debian: apt-get install openjdk-17-jdk-headless) or set ES_JAVA_HOME"
}

# ES|QL modules, once per distribution (deploy/elasticsearch-esql.sh).
add_esql() {
    local version=$1 home=$2 dist=$3 jdk=$4
    [[ -e $dist/.icsmon-esql ]] && return
    if [[ $version != "$DEFAULT_VERSION" ]]; then
        info "warning: no ES|QL for Elasticsearch $version (its modules are assembled for $DEFAULT_VERSION)"
        return
    fi
    bash "$HERE/elasticsearch-esql.sh" "$dist" "$home/downloads" "$jdk" || die "adding ES|QL to $dist failed"
    touch "$dist/.icsmon-esql"
}

ensure_user() {
    id -u "$ES_USER" >/dev/null 2>&1 && return
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$ES_USER" || die "cannot create system user $ES_USER"
    info "created system user $ES_USER (Elasticsearch refuses to run as root)"
}

as_es() {
    if is_root; then
        runuser -u "$ES_USER" -- "$@"
    else
        "$@"
    fi
}

pid_file() { echo "$1/run/elasticsearch.pid"; }

# Prints the pid of the node started from this home, if it is alive.
running_pid() {
    local file pid
    file=$(pid_file "$1")
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'org\.elasticsearch' || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Asks /_cluster/health: the integ-test distribution has no rest-root module, so `GET /` is a 405.
answers_as_elasticsearch() {
    curl -fsS --max-time 5 "$URL/_cluster/health" 2>/dev/null | grep -q '"cluster_name"'
}

health_ok() {
    curl -fsS --max-time 10 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" >/dev/null 2>&1
}

wait_healthy() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until health_ok; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

write_config() {
    local dist=$1 home=$2 security=""
    mkdir -p "$home/config" "$home/data" "$home/logs" "$home/tmp" "$home/run"
    # Fresh copies of the distribution's defaults; the keystore the node creates survives.
    cp -R "$dist/config/." "$home/config/"
    # Security ships in this distribution (modules/x-pack-security). Development and CI
    # talk plain HTTP without users; a deployment that needs users and roles turns it on.
    [[ -d $dist/modules/x-pack-security ]] && security="xpack.security.enabled: false"
    cat >"$home/config/elasticsearch.yml" <<EOF
# Written by deploy/elasticsearch.sh on every start; edit the script, not this file.
cluster.name: $CLUSTER_NAME
node.name: ${CLUSTER_NAME}-1
path.data: $home/data
path.logs: $home/logs
network.host: 127.0.0.1
http.port: $PORT
discovery.type: single-node
# A nearly full disk on a laptop or CI runner must not make test indices read-only
# (flood stage) or leave shards unassigned (low/high watermarks).
cluster.routing.allocation.disk.threshold_enabled: false
$security
EOF
    mkdir -p "$home/config/jvm.options.d"
    printf '%s\n' "# Written by deploy/elasticsearch.sh: a small fixed heap for development and CI." \
        "-Xms$HEAP" "-Xmx$HEAP" >"$home/config/jvm.options.d/icsmon.options"
    if is_root; then
        chown -R "$ES_USER:$ES_USER" "$home/config" "$home/data" "$home/logs" "$home/tmp" "$home/run"
    fi
}

show_logs() {
    local home=$1 file
    for file in "$home/run/launcher.log" "$home/logs/$CLUSTER_NAME.log"; do
        # Only what this start wrote: an older node log would point at the wrong cause.
        [[ -s $file && ! $home/run/start-marker -nt $file ]] || continue
        echo "---- last lines of $file ----" >&2
        tail -n 40 "$file" >&2
    done
}

stop_home() {
    local home=$1 pid deadline
    pid=$(running_pid "$home") || return 0
    info "stopping Elasticsearch (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            info "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.5
    done
    rm -f "$(pid_file "$home")"
    info "stopped"
}

# A node that failed before writing its pid file is found by its -Des.path.home.
kill_strays() {
    local dist=$1 proc pid
    for proc in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$proc/cmdline" | grep -qF -- "-Des.path.home=$dist " || continue
        pid=${proc#/proc/}
        info "killing leftover Elasticsearch process $pid"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# Start failed: show why, and leave nothing running.
fail_start() {
    local home=$1 dist=$2 launcher=$3
    shift 3
    show_logs "$home"
    stop_home "$home"
    kill "$launcher" 2>/dev/null || true
    kill_strays "$dist"
    die "$@"
}

cmd_install() {
    local version home dist jdk
    version=$(resolve_version)
    home=$(home_for "$version")
    dist=$(install "$version" "$home")
    jdk=$(choose_java "$dist")
    add_esql "$version" "$home" "$dist" "$jdk"
    is_root && ensure_user
    info "Elasticsearch $version in $home, JDK $jdk ($(java_major "$jdk"))"
}

cmd_start() {
    local version home dist jdk pid launcher rc="" started deadline
    version=$(resolve_version)
    home=$(home_for "$version")
    if pid=$(running_pid "$home"); then
        info "already running (pid $pid) at $URL"
        wait_healthy || { show_logs "$home"; die "running but not healthy within ${START_TIMEOUT}s"; }
        return
    fi
    if port_open; then
        answers_as_elasticsearch || die "127.0.0.1:$PORT is taken by something that is not Elasticsearch; set ICSMON_ES_PORT"
        info "an Elasticsearch not started from $home already answers at $URL; using it"
        wait_healthy || die "the Elasticsearch at $URL is not healthy within ${START_TIMEOUT}s"
        return
    fi
    dist=$(install "$version" "$home")
    jdk=$(choose_java "$dist")
    add_esql "$version" "$home" "$dist" "$jdk"
    if is_root; then
        ensure_user
        runuser -u "$ES_USER" -- test -r "$dist/bin/elasticsearch" \
            || die "user $ES_USER cannot read $dist (a parent directory is private); set ICSMON_ES_HOME elsewhere"
    fi
    write_config "$dist" "$home"
    rm -f "$(pid_file "$home")"
    echo "$version" >"$home/run/version"
    touch "$home/run/start-marker"
    info "starting Elasticsearch $version on $URL (JDK $jdk, heap $HEAP, home $home)"
    # -d detaches the node once it is up; the launcher's own output goes to a file.
    as_es env -u JAVA_HOME ES_JAVA_HOME="$jdk" ES_PATH_CONF="$home/config" ES_TMPDIR="$home/tmp" \
        "$dist/bin/elasticsearch" -d -p "$(pid_file "$home")" >"$home/run/launcher.log" 2>&1 &
    launcher=$!
    started=$SECONDS
    deadline=$((SECONDS + START_TIMEOUT))
    until health_ok; do
        # The launcher exits 0 once the node is up (health may lag a moment), non-zero if not.
        if [[ -z $rc ]] && ! kill -0 "$launcher" 2>/dev/null; then
            rc=0
            wait "$launcher" || rc=$?
        fi
        if [[ -n $rc ]] && { ((rc != 0)) || ! running_pid "$home" >/dev/null; }; then
            fail_start "$home" "$dist" "$launcher" \
                "Elasticsearch $version did not start (launcher exit status $rc)"
        fi
        if ((SECONDS >= deadline)); then
            fail_start "$home" "$dist" "$launcher" \
                "Elasticsearch $version was not healthy (yellow) within ${START_TIMEOUT}s"
        fi
        sleep 1
    done
    [[ -n $rc ]] || wait "$launcher" 2>/dev/null || true
    info "Elasticsearch $version is up at $URL, $((SECONDS - started))s after launch"
}

# Homes whose node `stop`/`status` look at: the configured one, or every one in the cache.
known_homes() {
    if [[ -n ${ICSMON_ES_HOME:-} ]]; then
        echo "$ICSMON_ES_HOME"
    elif [[ -n ${ICSMON_ES_VERSION:-} ]]; then
        home_for "$ICSMON_ES_VERSION"
    else
        local dir
        for dir in "$(cache_root)"/elasticsearch-*/; do
            [[ -d $dir ]] && echo "${dir%/}"
        done
    fi
}

cmd_stop() {
    local home any=0
    while read -r home; do
        [[ -n $home ]] || continue
        running_pid "$home" >/dev/null || continue
        stop_home "$home"
        any=1
    done < <(known_homes)
    ((any)) || info "not running"
}

cmd_status() {
    local home pid health
    while read -r home; do
        [[ -n $home ]] || continue
        pid=$(running_pid "$home") || continue
        health=$(curl -fsS --max-time 5 "$URL/_cluster/health" 2>/dev/null \
            | grep -o '"status":"[a-z]*"' | cut -d'"' -f4 || true)
        echo "running: Elasticsearch $(cat "$home/run/version" 2>/dev/null) pid $pid at $URL," \
            "health ${health:-unknown}, home $home"
        return 0
    done < <(known_homes)
    if answers_as_elasticsearch; then
        echo "running: an Elasticsearch not started by this script answers at $URL"
        return 0
    fi
    echo "stopped: nothing answers at $URL"
    return 3
}

main() {
    case "${1:-}" in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        url) echo "$URL" ;;
        *) die "usage: $0 install|start|stop|status|url" ;;
    esac
}

main "$@"

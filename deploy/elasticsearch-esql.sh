#!/usr/bin/env bash
# Adds ES|QL to the integ-test Elasticsearch that deploy/elasticsearch.sh installs.
#
#   bash deploy/elasticsearch-esql.sh DIST DOWNLOADS JDK
#
# DIST is the unpacked distribution (elasticsearch-<version>), DOWNLOADS a cache folder
# for the jars, JDK the Java home the node runs on (its javac and jar, if it has them,
# build the small compatibility module described below). elasticsearch.sh calls this
# once per installed distribution.
#
# The integ-test distribution ships x-pack core and security only. The ES|QL plugin and
# everything it needs are published on Maven Central as separate jars, with the plugin
# descriptors inside them (META-INF/es-plugins/<name>/plugin-descriptor.properties); this
# script fetches them (sha1-checked against the .sha1 files Maven Central serves) and
# installs two modules, x-pack-esql-core and x-pack-esql. The list below is the one the
# ES|QL jars' own build metadata names for 8.19.21, less what the distribution already
# has (grok, joni, jcodings and hppc in lib/, slf4j-api in x-pack-core); other versions
# are refused, since their third-party versions differ.
#
# Two things are not on Maven Central: lang-painless and x-pack-ml, both named as
# extended plugins in the ES|QL descriptor. ES|QL uses no painless class, and ML classes
# only for the CATEGORIZE and CHANGE_POINT commands, which need a platinum licence in
# any case. The descriptor is rewritten to extend x-pack-esql-core and a module
# x-pack-esql-ml-stub, which holds nothing but the two licensed-feature constants those
# commands check: on this basic-licence node they then fail with a 400 (licence) instead
# of a NoClassDefFoundError that stops the node. Without a javac the stub is left out
# and those two commands must not be sent.
#
# Idempotent: the modules are built in a staging folder and swapped in whole; a failed
# run leaves the distribution as it was.
set -euo pipefail

readonly VERIFIED_VERSION="8.19.21"
readonly MAVEN="${ICSMON_MAVEN_URL:-https://repo1.maven.org/maven2}"

info() { echo "elasticsearch-esql.sh: $*" >&2; }
die() { echo "elasticsearch-esql.sh: error: $*" >&2; exit 1; }

# module, then group:artifact:version of each jar it holds.
artifacts() {
    local v=$1
    cat <<EOF
x-pack-esql-core org.elasticsearch.plugin:x-pack-esql-core:$v
x-pack-esql-core org.elasticsearch.plugin:x-pack-mapper-version:$v
x-pack-esql-core org.antlr:antlr4-runtime:4.13.1
x-pack-esql org.elasticsearch.plugin:x-pack-esql:$v
x-pack-esql org.elasticsearch.plugin:x-pack-esql-compute:$v
x-pack-esql org.elasticsearch.plugin:x-pack-esql-compute-ann:$v
x-pack-esql org.elasticsearch.plugin:x-pack-kql:$v
x-pack-esql org.elasticsearch.plugin:arrow:$v
x-pack-esql org.elasticsearch:elasticsearch-dissect:$v
x-pack-esql org.elasticsearch:elasticsearch-h3:8.19.4
x-pack-esql org.apache.lucene:lucene-spatial3d:9.12.2
x-pack-esql org.apache.arrow:arrow-vector:18.3.0
x-pack-esql org.apache.arrow:arrow-format:18.3.0
x-pack-esql org.apache.arrow:arrow-memory-core:18.3.0
x-pack-esql org.checkerframework:checker-qual:3.42.0
x-pack-esql com.google.flatbuffers:flatbuffers-java:23.5.26
x-pack-esql com.fasterxml.jackson.core:jackson-core:2.18.9
x-pack-esql com.fasterxml.jackson.core:jackson-annotations:2.18.9
x-pack-esql com.fasterxml.jackson.core:jackson-databind:2.18.9
x-pack-esql org.slf4j:slf4j-nop:2.0.17
EOF
}
# elasticsearch-h3 was published up to 8.19.4 only; ES|QL uses it for the ST_GEOHEX
# functions, which 8.19 release builds do not offer.

# Prints the cached, verified jar of group:artifact:version.
fetch() {
    local gav=$1 downloads=$2 group artifact version path jar expected
    IFS=: read -r group artifact version <<<"$gav"
    path="${group//.//}/$artifact/$version/$artifact-$version.jar"
    jar="$downloads/$artifact-$version.jar"
    if [[ ! -s $jar.sha1 ]]; then
        curl -fsSL --retry 3 --connect-timeout 10 -o "$jar.sha1.part" "$MAVEN/$path.sha1" \
            || die "cannot download $MAVEN/$path.sha1"
        mv "$jar.sha1.part" "$jar.sha1"
    fi
    expected=$(head -c 40 "$jar.sha1" | tr 'A-F' 'a-f')
    [[ $expected =~ ^[0-9a-f]{40}$ ]] || { rm -f "$jar.sha1"; die "$jar.sha1 is not a sha1"; }
    if [[ -f $jar && $(sha1sum "$jar" | cut -c1-40) == "$expected" ]]; then
        echo "$jar"
        return
    fi
    curl -fsSL --retry 3 --connect-timeout 10 -o "$jar.part" "$MAVEN/$path" || die "cannot download $MAVEN/$path"
    if [[ $(sha1sum "$jar.part" | cut -c1-40) != "$expected" ]]; then
        rm -f "$jar.part"
        die "$artifact-$version.jar does not match its published sha1 $expected"
    fi
    mv "$jar.part" "$jar"
    echo "$jar"
}

# The descriptor a jar carries for plugin NAME, with extended.plugins replaced by EXTENDS.
descriptor() {
    local jar=$1 name=$2 extends=$3 text
    text=$(unzip -p "$jar" "META-INF/es-plugins/$name/plugin-descriptor.properties") \
        || die "$(basename "$jar") has no descriptor for $name"
    grep -q "^name=$name\$" <<<"$text" || die "$(basename "$jar"): descriptor is not for $name"
    if [[ -n $extends ]]; then
        # shellcheck disable=SC2001 # a line of a multi-line text, anchored
        sed "s/^extended\\.plugins=.*/extended.plugins=$extends/" <<<"$text"
    else
        echo "$text"
    fi
}

# Compiles the x-pack-esql-ml-stub module into STAGE; fails (status 1) without javac and jar.
build_ml_stub() {
    local dist=$1 stage=$2 jdk=$3 version=$4 javac="" jar_tool="" candidate src classes
    for candidate in "$jdk" /usr/lib/jvm/*; do
        if [[ -x $candidate/bin/javac && -x $candidate/bin/jar ]]; then
            javac=$candidate/bin/javac
            jar_tool=$candidate/bin/jar
            break
        fi
    done
    [[ -n $javac ]] || return 1
    src="$stage/ml-stub-src"
    classes="$stage/ml-stub-classes"
    mkdir -p "$src/org/elasticsearch/xpack/ml" "$src/org/elasticsearch/xpack/esqlmlstub" "$classes" \
        "$stage/x-pack-esql-ml-stub"
    cat >"$src/org/elasticsearch/xpack/ml/MachineLearning.java" <<'EOF'
package org.elasticsearch.xpack.ml;

import org.elasticsearch.license.License;
import org.elasticsearch.license.LicensedFeature;

/** Only the licensed-feature constants ES|QL checks before CATEGORIZE and CHANGE_POINT; not ML. */
public final class MachineLearning {
    public static final LicensedFeature.Momentary CATEGORIZE_TEXT_AGG_FEATURE = LicensedFeature.momentary(
        "machine-learning", "categorize-text-agg", License.OperationMode.PLATINUM);
    public static final LicensedFeature.Momentary CHANGE_POINT_AGG_FEATURE = LicensedFeature.momentary(
        "machine-learning", "change-point-agg", License.OperationMode.PLATINUM);

    private MachineLearning() {}
}
EOF
    cat >"$src/org/elasticsearch/xpack/esqlmlstub/EsqlMlStubPlugin.java" <<'EOF'
package org.elasticsearch.xpack.esqlmlstub;

import org.elasticsearch.plugins.ExtensiblePlugin;
import org.elasticsearch.plugins.Plugin;

/** An empty extensible plugin: x-pack-esql, extending it, sees the MachineLearning class. */
public class EsqlMlStubPlugin extends Plugin implements ExtensiblePlugin {}
EOF
    "$javac" -nowarn --release 17 -d "$classes" \
        -cp "$dist/lib/*:$dist/modules/x-pack-core/x-pack-core-$version.jar" \
        "$src/org/elasticsearch/xpack/ml/MachineLearning.java" \
        "$src/org/elasticsearch/xpack/esqlmlstub/EsqlMlStubPlugin.java" >&2 \
        || die "compiling x-pack-esql-ml-stub failed"
    "$jar_tool" --create --date=1980-02-01T00:00:02Z --file "$stage/x-pack-esql-ml-stub/x-pack-esql-ml-stub-$version.jar" \
        -C "$classes" . || die "packing x-pack-esql-ml-stub failed"
    cat >"$stage/x-pack-esql-ml-stub/plugin-descriptor.properties" <<EOF
description=The ML licensed-feature constants ES|QL checks (written by deploy/elasticsearch-esql.sh; no ML)
version=$version
name=x-pack-esql-ml-stub
classname=org.elasticsearch.xpack.esqlmlstub.EsqlMlStubPlugin
java.version=17
elasticsearch.version=$version
extended.plugins=x-pack-core
EOF
}

main() {
    (($# == 3)) || die "usage: elasticsearch-esql.sh DIST DOWNLOADS JDK"
    local dist=$1 downloads=$2 jdk=$3 version module gav jar stage extends modules total=0
    version=$(basename "$dist")
    version=${version#elasticsearch-}
    [[ -f $dist/lib/elasticsearch-$version.jar ]] || die "$dist is not an Elasticsearch distribution"
    [[ $version == "$VERIFIED_VERSION" ]] \
        || die "ES|QL modules are assembled for Elasticsearch $VERIFIED_VERSION only, not $version"
    [[ -d $dist/modules/x-pack-core ]] || die "$dist has no x-pack-core module (ES|QL builds on it)"
    local tool
    for tool in curl sha1sum unzip; do
        command -v "$tool" >/dev/null 2>&1 || die "missing $tool"
    done
    mkdir -p "$downloads"
    stage=$(mktemp -d "$dist/modules/.esql-stage.XXXXXX")
    # shellcheck disable=SC2064 # expand now: $stage is local
    trap "rm -rf '$stage'" EXIT
    mkdir -p "$stage/x-pack-esql-core" "$stage/x-pack-esql"
    while read -r module gav; do
        jar=$(fetch "$gav" "$downloads")
        cp "$jar" "$stage/$module/"
        total=$((total + $(stat -c %s "$jar")))
    done < <(artifacts "$version")
    descriptor "$stage/x-pack-esql-core/x-pack-esql-core-$version.jar" x-pack-esql-core "" \
        >"$stage/x-pack-esql-core/plugin-descriptor.properties"
    modules="x-pack-esql-core x-pack-esql"
    if build_ml_stub "$dist" "$stage" "$jdk" "$version"; then
        extends="x-pack-esql-core,x-pack-esql-ml-stub"
        modules+=" x-pack-esql-ml-stub"
    else
        extends="x-pack-esql-core"
        info "warning: no javac found: without x-pack-esql-ml-stub, CATEGORIZE and CHANGE_POINT stop the node"
    fi
    descriptor "$stage/x-pack-esql/x-pack-esql-$version.jar" x-pack-esql "$extends" \
        >"$stage/x-pack-esql/plugin-descriptor.properties"
    # Arrow reflects on its own classes (the JDKs that still run a security manager need this).
    cat >"$stage/x-pack-esql/plugin-security.policy" <<'EOF'
grant codeBase "${codebase.arrow}" {
  permission java.lang.RuntimePermission "accessDeclaredMembers";
  permission java.lang.reflect.ReflectPermission "suppressAccessChecks";
};
EOF
    rm -rf "$dist/modules/x-pack-esql-ml-stub"
    for module in $modules; do
        rm -rf "${dist:?}/modules/$module"
        mv "$stage/$module" "$dist/modules/$module"
    done
    chmod -R go+rX,go-w "$dist/modules"
    info "added modules $modules to $dist ($((total / 1048576)) MiB of jars from Maven Central)"
}

main "$@"

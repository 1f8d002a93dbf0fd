#!/usr/bin/env bash
# Resolve Apache Kafka's jars (broker, storage and tools, with their dependencies) from Maven
# Central into a cache outside the repository, and print the directory that holds them.
#
#   tools/kafka_jars.sh            -> prints e.g. /root/.cache/pylog/kafka-4.4.0-r2/libs
#   tools/kafka_jars.sh --check    -> resolves nothing: exit 0 if the jars are cached or can be
#                                     fetched (Java 17+ and Maven present), else says what is missing
#   java -cp "$(tools/kafka_jars.sh)/*" org.apache.kafka.tools.DumpLogSegments --files X.log
#
# Tests use Kafka's own tools as an independent judge of our files (tests/kafka.py finds the
# directory through PYLOG_KAFKA_LIBS or this cache). Needs Java 17+ and Maven; says what is
# missing otherwise (exit 3). The cache survives between runs: a second call resolves nothing.
# Besides Kafka: log4j-slf4j-impl, the SLF4J 1.7 binding to log4j2 (Kafka's jars bring slf4j-api
# 1.7.36 and log4j-core but no binding, so without it a broker logs nothing: "NOP logger"), at the
# version of the log4j-core Kafka $version depends on. tools/kafka_broker.py runs the broker from here.
set -euo pipefail
version=${PYLOG_KAFKA_VERSION:-4.4.0}
log4j_version=${PYLOG_LOG4J_VERSION:-2.25.5}
# why the revision: bumped whenever the pom below changes, so a cache built from an older pom is
# rebuilt instead of silently lacking a jar (r2: the log4j2 binding)
pom_revision=2
cache=${PYLOG_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pylog/kafka-$version-r$pom_revision}
libs="$cache/libs"
check_only=0
if [ "${1:-}" = "--check" ]; then check_only=1; fi

command -v java >/dev/null || { echo "kafka_jars.sh: java not found (Kafka $version needs Java 17+)" >&2; exit 3; }
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
if [ "${java_major%%.*}" -lt 17 ] 2>/dev/null; then
  echo "kafka_jars.sh: Java $java_major found, Kafka $version needs Java 17+" >&2; exit 3
fi
if [ -f "$libs/.complete" ]; then echo "$libs"; exit 0; fi
if [ "$check_only" = 1 ]; then
  command -v mvn >/dev/null || { echo "kafka_jars.sh: mvn (Maven) not found; it fetches Kafka's jars (not cached in $cache)" >&2; exit 3; }
  echo "$libs"; exit 0
fi
mkdir -p "$cache"
# why the lock: parallel test workers may all find the cache cold; one fetches, the others wait
exec 9>"$cache/.lock"
flock 9
if [ -f "$libs/.complete" ]; then echo "$libs"; exit 0; fi
command -v mvn >/dev/null || { echo "kafka_jars.sh: mvn (Maven) not found; it fetches Kafka's jars" >&2; exit 3; }

cat > "$cache/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>pylog</groupId><artifactId>kafka-jars</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$log4j_version</version></dependency>
  </dependencies>
</project>
POM
rm -rf "$libs"
mvn -q -B -Dstyle.color=never -f "$cache/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" >&2
touch "$libs/.complete"
echo "$libs"

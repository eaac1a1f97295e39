#!/bin/sh
# Part of the offline @remote_coverage_tools stand-in: coverage is not available.
echo "bazel coverage needs the real @remote_coverage_tools repository;" \
     "rules_torchpack only ships an offline stand-in" >&2
exit 1

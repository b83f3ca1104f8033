"""Provenance records: commit, versions, machine, and the rendered block."""

import re

from residual_lib import __version__
from residual_lib.book import provenance


def test_git_commit_is_a_hash_here_and_unknown_outside_git(tmp_path):
    assert re.fullmatch(r"[0-9a-f]{12}(\+dirty)?", provenance.git_commit())
    assert provenance.git_commit(tmp_path) == "unknown"


def test_package_versions_reports_missing_distributions():
    versions = provenance.package_versions(["pyyaml", "no-such-distribution-xyz"])
    assert re.fullmatch(r"\d+\.\d+.*", versions["pyyaml"])
    assert versions["no-such-distribution-xyz"] == "not installed"


def test_record_resolves_the_device_parameter():
    rec = provenance.record("smoke", "nb", {"device": "cpu", "n": 3})
    assert rec["device"] == "cpu" and rec["parameters"] == {"device": "'cpu'", "n": "3"}
    assert rec["residual_lib"] == __version__ and rec["runtime_s"] is None and rec["cpus"] >= 1


def test_rendered_block_escapes_parameter_values_and_says_runtime_is_pending():
    rec = provenance.record("toy", "nb", {"label": "<b>x</b>"})
    data, metadata = provenance.bundle(rec)
    assert "&lt;b&gt;x&lt;/b&gt;" in data["text/html"] and "<b>x</b>" not in data["text/html"]
    assert provenance.NOT_MEASURED in data["text/plain"] and metadata[provenance.METADATA_KEY] is rec

"""Provenance records: commit, versions, machine, and the rendered block."""

import re
import subprocess

from residual_lib import __version__
from residual_lib.book import provenance


def test_git_commit_is_a_hash_here_and_unknown_outside_git(tmp_path):
    assert re.fullmatch(r"[0-9a-f]{12}", provenance.git_commit())
    assert provenance.git_commit(tmp_path) == "unknown" and provenance.changed_files(tmp_path) == []


def test_a_dirty_checkout_names_its_clean_commit_and_the_files_that_differ(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = 1\n")
    git("add", "a.py", "b.py")
    git("commit", "-qm", "first")
    (tmp_path / "untracked.py").write_text("")
    commit = provenance.git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{12}", commit) and provenance.changed_files(tmp_path) == []
    (tmp_path / "b.py").write_text("x = 2\n")
    assert provenance.changed_files(tmp_path) == ["b.py"]
    assert provenance.describe_commit(commit, ["b.py"]) == f"{commit} with uncommitted changes to 1 file: b.py"
    assert provenance.describe_commit(commit, []) == commit


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

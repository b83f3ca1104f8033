"""Dictionary resolution: the toy list, and the pinned, hash-checked download of the paper's list (faked here)."""

import hashlib

import pytest

from residual_lib.data import text_dictionary as td
from residual_lib.data.text_dictionary import DictionaryUnavailableError, RemoteText, fetch_remote_text, text_dictionary

FAKE = b"A photo of a dog\nAn image with cats\n\nPicture taken in Cyprus\n"
FAKE_REMOTE = RemoteText(repo="someone/repo", commit="0" * 40, path="list.txt",
                         sha256=hashlib.sha256(FAKE).hexdigest(), filename="fake_list.txt")


@pytest.fixture
def artifacts(monkeypatch, tmp_path):
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv("RESIDUAL_OFFLINE", raising=False)
    return tmp_path


def test_toy_dictionary_resolves():
    entries = text_dictionary("toy")
    assert len(entries) > 10 and all(isinstance(e, str) and e for e in entries)


def test_unknown_dictionary_names_the_valid_ones():
    with pytest.raises(KeyError, match="gandelsman-general"):
        text_dictionary("nope")


def test_paper_dictionary_is_pinned_to_the_commit_and_hash_of_the_issue():
    remote = td.REMOTE_DICTIONARIES["gandelsman-general"]
    assert remote.url == ("https://raw.githubusercontent.com/yossigandelsman/clip_text_span/"
                          "49f70f31bb13437a870ff8de340626b225500a22/text_descriptions/image_descriptions_general.txt")
    assert remote.sha256 == "39c6bf3e788684d9e0e8afa902c13aae1ee8eafefdbab94ba923fd05b9038630"


def test_download_is_verified_saved_once_and_read(artifacts, monkeypatch):
    calls = []
    monkeypatch.setattr(td, "_fetch", lambda url: calls.append(url) or FAKE)
    monkeypatch.setitem(td.REMOTE_DICTIONARIES, "fake", FAKE_REMOTE)
    assert text_dictionary("fake") == ["A photo of a dog", "An image with cats", "Picture taken in Cyprus"]
    assert (artifacts / "downloads" / "fake_list.txt").read_bytes() == FAKE
    text_dictionary("fake")
    assert calls == [FAKE_REMOTE.url], "the second call must read the verified local copy"


def test_download_with_wrong_hash_is_refused_and_not_saved(artifacts, monkeypatch):
    monkeypatch.setattr(td, "_fetch", lambda url: FAKE + b"tampered\n")
    with pytest.raises(ValueError, match="sha256"):
        fetch_remote_text(FAKE_REMOTE, "fake")
    assert not (artifacts / "downloads" / "fake_list.txt").exists()


def test_corrupt_local_copy_is_detected(artifacts):
    (artifacts / "downloads").mkdir()
    (artifacts / "downloads" / "fake_list.txt").write_bytes(b"something else\n")
    with pytest.raises(ValueError, match="delete the file"):
        fetch_remote_text(FAKE_REMOTE, "fake")


def test_offline_error_says_what_to_do(artifacts, monkeypatch):
    monkeypatch.setenv("RESIDUAL_OFFLINE", "1")
    monkeypatch.setattr(td, "_fetch", lambda url: pytest.fail("a download was attempted"))
    with pytest.raises(DictionaryUnavailableError) as err:
        text_dictionary("gandelsman-general")
    assert "gandelsman-general" in str(err.value) and td.GANDELSMAN_GENERAL.url in str(err.value)


def test_network_failure_becomes_a_clear_error(artifacts, monkeypatch):
    def unreachable(url):
        raise OSError("Network is unreachable")
    monkeypatch.setattr(td, "_fetch", unreachable)
    with pytest.raises(DictionaryUnavailableError, match="download of .* failed"):
        text_dictionary("gandelsman-general")

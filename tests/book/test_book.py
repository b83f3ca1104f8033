"""The notebook runner (residual_lib.book): parameter merging, toc parsing, failures named, overrides, logs."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from residual_lib.book import layout as book_layout, runner as book, provenance
from residual_lib.paths import REPO_ROOT

OK_NOTEBOOK = '''\
# %% [markdown]
# # A page that works

# %% tags=["parameters"]
n = 1  # doubled below
label: str = "toy"

# %%
import os
import time
from tqdm.auto import tqdm

for _ in tqdm(range(300), desc="steps"):
    time.sleep(0.005)
print("result", 2 * n, label, os.environ.get("RESIDUAL_PROFILE"))
'''

FAILING_NOTEBOOK = '''\
# %% [markdown]
# # A page that raises

# %% tags=["parameters"]
threshold = 3

# %%
values = list(range(threshold))

# %%
if len(values) == threshold:
    raise ValueError("planted failure")
'''


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    return subprocess.run([sys.executable, "-m", "residual_lib.book", *args], capture_output=True, text=True,
                          env=env)


def stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")


def test_parse_overrides_reads_yaml_values():
    assert book_layout.parse_overrides(["n=100", "ds=[a, b]", "name=cpu", "x=0.5"]) == {
        "n": 100, "ds": ["a", "b"], "name": "cpu", "x": 0.5}


@pytest.mark.parametrize("bad", ["n", "=3", "two words=1"])
def test_parse_overrides_rejects_malformed(bad):
    with pytest.raises(book_layout.BookError, match="key=value"):
        book_layout.parse_overrides([bad])


def test_an_empty_override_value_is_refused_not_read_as_null():
    """`-p n=` silently meant n=None ("all images")."""
    with pytest.raises(book_layout.BookError, match="override 'n=' has no value; write n=null for None"):
        book_layout.parse_overrides(["n="])
    assert book_layout.parse_overrides(["n=null"]) == {"n": None}


def test_merge_parameters_precedence_and_undeclared_defaults():
    merged = book_layout.merge_parameters("nb", ["device", "n", "seed"], defaults={"device": "auto", "n": 1, "other": 9},
                                   own={"n": 5}, overrides={"seed": 7, "unrelated": 1})
    assert merged == {"device": "auto", "n": 5, "seed": 7}


def test_merge_parameters_rejects_undeclared_key_in_notebook_file():
    with pytest.raises(book_layout.BookError, match=r"n_sampels.*declared: n, seed"):
        book_layout.merge_parameters("nb", ["n", "seed"], defaults={}, own={"n_sampels": 3}, overrides={})


def test_parameter_files_merge_defaults_and_name_bad_profile(tmp_path):
    folder = tmp_path / "smoke"
    folder.mkdir()
    (folder / "_defaults.yaml").write_text("device: auto\nn: 1\n")
    (folder / "nb.yaml").write_text("n: 2\n")
    assert book_layout.parameter_files(tmp_path, "smoke", "nb") == ({"device": "auto", "n": 1}, {"n": 2})
    with pytest.raises(book_layout.BookError, match="unknown profile 'big'; valid: toy, smoke, paper, real"):
        book_layout.parameter_files(tmp_path, "big", "nb")
    with pytest.raises(book_layout.BookError, match="no parameter file .*other.yaml"):
        book_layout.parameter_files(tmp_path, "smoke", "other")


def test_declared_parameters_sees_plain_and_annotated_assignments():
    assert book_layout.declared_parameters("a = 1  # note\nb: int = 2\nc, d = 3, 4\nimport os\n") == ["a", "b"]


def test_toc_order_and_missing_source(book_project):
    root = book_project({"ok": OK_NOTEBOOK})
    layout = book_layout.Layout(root)
    assert book_layout.toc_files(layout.toc) == ["intro", "notebooks/ok"]
    assert book_layout.toc_notebooks(layout) == ["ok"]
    (root / "notebooks" / "ok.py").unlink()
    with pytest.raises(book_layout.BookError, match="without a Jupytext source: .*ok.py"):
        book_layout.toc_notebooks(layout)


def test_select_names_unknown_notebooks():
    assert book_layout.select(["a", "b", "c"], ["c", "a"]) == ["a", "c"]
    with pytest.raises(book_layout.BookError, match="unknown notebook.*zz; the toc lists: a, b"):
        book_layout.select(["a", "b"], ["zz"])


def test_write_report_keeps_rows_of_notebooks_not_rerun(tmp_path):
    path = tmp_path / "report.csv"
    rec = lambda name, t: book.RunRecord(name, "smoke", "ok", t, 100.0, "abc", "now")  # noqa: E731
    book.write_report(path, [rec("a", 1.0), rec("b", 2.0), rec("gone", 3.0)], ["a", "b", "gone"])
    book.write_report(path, [rec("b", 5.0)], ["a", "b"])
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["notebook"], r["runtime (s)"]) for r in rows] == [("a", "1.0"), ("b", "5.0"), (book.TOTAL_ROW, "6.0")]
    assert rows[-1]["peak memory (MiB)"] == "100" and rows[-1]["status"] == "ok"


def test_log_problems_flags_warnings_and_failed_execution():
    log = ("reading sources... [ 50%] notebooks/error_analysis\nfoo.md:3: WARNING: undefined label\n"
           "Execution Failed with traceback\nbar.md:1: ERROR: Unknown directive type\nbuild succeeded")
    assert book.log_problems(log) == ["foo.md:3: WARNING: undefined label", "Execution Failed with traceback",
                                      "bar.md:1: ERROR: Unknown directive type"]


def test_executed_errors_finds_error_outputs(book_project):
    layout = book_layout.Layout(book_project({"ok": OK_NOTEBOOK}))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1/0", outputs=[
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])])
    layout.executed("ok").parent.mkdir(parents=True)
    nbformat.write(nb, layout.executed("ok"))
    assert book.executed_errors(layout, ["ok"]) == [
        "notebook 'ok' cell 1 shows an error: ZeroDivisionError: division by zero"]


def test_the_kernel_knows_its_profile_and_notebook_and_the_environment_is_restored(monkeypatch):
    """The claim ledger files a notebook's verdicts under the notebook the runner executes (report.results)."""
    from residual_lib.report import results

    monkeypatch.delenv(results.NOTEBOOK_ENV, raising=False)
    with book.kernel_environment("toy", "real_model"):
        assert (results.current_run(), results.current_notebook()) == ("toy", "real_model")
    assert results.current_notebook() is None


def test_finalise_provenance_writes_runtime_into_output():
    rec = {"notebook": "nb", "profile": "smoke", "parameters": {"n": "1"}, "commit": "abc", "residual_lib": "0",
           "device": "cpu", "gpus": "none", "cpus": 2, "runtime_s": None, "peak_rss_mib": None}
    data, metadata = provenance.bundle(rec)
    assert provenance.NOT_MEASURED in data["text/plain"]
    cell = nbformat.v4.new_code_cell("", metadata={"tags": [book.PROVENANCE_TAG]}, outputs=[
        nbformat.v4.new_output("display_data", data=data, metadata=metadata)])
    nb = nbformat.v4.new_notebook(cells=[cell])
    book.finalise_provenance(nb, 12.34, 256.0)
    out = nb.cells[0].outputs[0]
    assert out.metadata[provenance.METADATA_KEY]["runtime_s"] == 12.3
    assert "12.3 s, peak memory 256 MiB" in out.data["text/html"]


@pytest.mark.slow
def test_failing_cell_is_named_and_other_notebooks_still_run(book_project):
    root = book_project({"boom": FAILING_NOTEBOOK, "ok": OK_NOTEBOOK})
    proc = run_cli("run", "--profile", "smoke", "--root", str(root))
    assert proc.returncode == 1
    assert "notebook 'boom'" in proc.stderr and "failed in cell 4" in proc.stderr
    assert '-->   2 |     raise ValueError("planted failure")' in proc.stderr
    assert "ValueError: planted failure" in proc.stderr
    with (root / "book" / "_generated" / "build_report.csv").open() as f:
        statuses = {r["notebook"]: r["status"] for r in csv.DictReader(f)}
    assert statuses == {"boom": "failed", "ok": "ok", book.TOTAL_ROW: "failed"}
    proc = run_cli("build", "--profile", "smoke", "--root", str(root), "--quiet", "--only", "boom")
    assert proc.returncode == 1 and "failed in cell 4" in proc.stderr
    assert not (root / "book" / "_build" / "html" / "index.html").exists()


@pytest.mark.slow
def test_override_reaches_notebook_and_provenance(book_project):
    root = book_project({"ok": OK_NOTEBOOK}, params={"ok": "label: from-file\n"}, defaults="n: 5\nseed: 1\n")
    proc = run_cli("run", "--profile", "smoke", "--root", str(root), "-p", "n=21")
    assert proc.returncode == 0, proc.stderr
    nb = nbformat.read(root / "book" / "notebooks" / "ok.ipynb", as_version=4)
    assert "result 42 from-file smoke" in stream_text(nb)  # the kernel knows its profile
    (prov,) = [c for c in nb.cells if book.PROVENANCE_TAG in c.metadata.get("tags", [])]
    rec = prov.outputs[0].metadata[provenance.METADATA_KEY]
    assert rec["parameters"] == {"n": "21", "label": "'from-file'"} and rec["profile"] == "smoke"
    assert rec["runtime_s"] > 0 and rec["peak_rss_mib"] > 10
    bad = run_cli("run", "--profile", "smoke", "--root", str(root), "-p", "nn=1")
    assert bad.returncode == 1 and "override(s) nn match no parameter of ok; ok: n, label" in bad.stderr


@pytest.mark.slow
def test_progress_bars_stay_a_few_lines(book_project):
    """300 tqdm steps over ~1.5 s: default tqdm redraws ~15 times; the runner's settings keep it to a few."""
    root = book_project({"ok": OK_NOTEBOOK})
    proc = run_cli("run", "--profile", "smoke", "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    redraws = [seg for seg in proc.stderr.replace("\r", "\n").splitlines() if seg.startswith("steps:")]
    assert 1 <= len(redraws) <= 4, redraws
    stored = stream_text(nbformat.read(root / "book" / "notebooks" / "ok.ipynb", as_version=4))
    assert "\r" not in stored and stored.count("steps:") == 1 and "300/300" in stored


FIGURE_NOTEBOOK = '''\
# %% [markdown]
# # A page with a figure

# %% tags=["parameters"]
slope = 2.0

# %%
import matplotlib.pyplot as plt
from myst_nb import glue

glue("slope_squared", slope**2, display=False)
plt.plot([0, 1], [0, slope])
plt.show()

# %% [markdown]
# The squared slope is {glue:text}`slope_squared:.1f`.
'''


@pytest.mark.slow
def test_build_renders_figures_and_glued_numbers(book_project):
    """Under a headless MPLBACKEND (as in tests) the page still gets its figure, and glue fills the prose."""
    root = book_project({"figure": FIGURE_NOTEBOOK}, params={"figure": "slope: 3.0\n"})
    proc = run_cli("build", "--profile", "smoke", "--root", str(root), "--quiet")
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (root / "book" / "_build" / "html" / "notebooks" / "figure.html").read_text()
    assert "The squared slope is" in html and "9.0" in html
    images = list((root / "book" / "_build" / "html" / "_images").glob("*.png"))
    assert len(images) == 1 and images[0].name in html and images[0].read_bytes()[:4] == b"\x89PNG"
    assert "Profile</th><td>smoke" in html and "slope=3.0" in html


@pytest.mark.slow
def test_sphinx_warning_fails_the_build(book_project):
    root = book_project({"figure": FIGURE_NOTEBOOK})
    (root / "book" / "intro.md").write_text("# Test book\n\nSee {ref}`no-such-label`.\n")
    proc = run_cli("build", "--profile", "smoke", "--root", str(root), "--quiet")
    assert proc.returncode == 1
    assert "intro.md:3: WARNING: undefined label: 'no-such-label'" in proc.stderr.split("FAILED:")[-1]


KILLED_NOTEBOOK = '''\
# %% [markdown]
# # A page whose kernel is killed (as the out-of-memory killer does)

# %% tags=["parameters"]
size = 1

# %%
print("before the kill")

# %%
import os
import signal

os.kill(os.getpid(), signal.SIGKILL)

# %%
print("never printed")
'''


@pytest.mark.slow
def test_killed_kernel_names_the_cell_and_publishes_nothing(book_project):
    """Issue 10: a SIGKILLed kernel gave 'could not run: DeadKernelError', a page marked completed, and
    a later build published it."""
    root = book_project({"killed": KILLED_NOTEBOOK, "ok": OK_NOTEBOOK})
    proc = run_cli("build", "--profile", "smoke", "--root", str(root), "--quiet")
    assert proc.returncode == 1
    err = proc.stderr.split("FAILED:")[-1]
    assert "notebook 'killed'" in err and "failed in cell 4" in err, err
    assert "the kernel died while this cell ran (killed by a signal or out of memory)" in err, err
    assert "os.kill(os.getpid(), signal.SIGKILL)" in err
    with (root / "book" / "_generated" / "build_report.csv").open() as f:
        statuses = {r["notebook"]: r["status"] for r in csv.DictReader(f)}
    assert statuses == {"killed": "failed", "ok": "ok", book.TOTAL_ROW: "failed"}
    assert not (root / "book" / "_build" / "html" / "index.html").exists()
    layout = book_layout.Layout(root)
    problems = book.executed_errors(layout, ["killed", "ok"])
    assert any("notebook 'killed' cell 4 shows an error: DeadKernelError" in p for p in problems), problems
    assert any("notebook 'killed' is half-run" in p and "cell(s) 5 never ran" in p for p in problems), problems
    again = run_cli("build", "--profile", "smoke", "--root", str(root), "--quiet", "--only", "ok")
    assert again.returncode == 1 and "notebook 'killed' is half-run" in again.stderr
    assert not (root / "book" / "_build" / "html" / "notebooks" / "killed.html").exists()


def test_half_run_page_of_an_interrupted_build_is_refused(book_project):
    """What papermill leaves when the runner itself is killed (make book interrupted): cells never started."""
    layout = book_layout.Layout(book_project({"ok": OK_NOTEBOOK}))
    cells = [nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"], "papermill": {
                 "start_time": "2026-12-01T08:00:00", "status": "completed"}}, execution_count=1),
             nbformat.v4.new_code_cell("print(2)", metadata={"papermill": {"start_time": None, "status": "pending"}})]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"papermill": {"end_time": None}})
    layout.executed("ok").parent.mkdir(parents=True)
    nbformat.write(nb, layout.executed("ok"))
    (problem,) = book.executed_errors(layout, ["ok"])
    assert problem.startswith("notebook 'ok' is half-run") and "cell(s) 2 never ran" in problem
    assert "python -m residual_lib.book run --only ok" in problem


@pytest.mark.slow
def test_parallel_run_executes_every_page_logs_each_and_names_failures(book_project):
    """`--jobs 2`: both pages run in worker processes, each page's output goes to its own log, the failure is
    named as in a serial run and the report holds every page."""
    raw = OK_NOTEBOOK + '\nos.write(2, b"written by the kernel itself\\n")\n'
    root = book_project({"boom": FAILING_NOTEBOOK, "ok": OK_NOTEBOOK, "ok2": raw})
    proc = run_cli("run", "--profile", "smoke", "--root", str(root), "--jobs", "2")
    assert proc.returncode == 1
    assert "notebook 'boom'" in proc.stderr and "failed in cell 4" in proc.stderr
    assert "ValueError: planted failure" in proc.stderr
    layout = book_layout.Layout(root)
    for name in ("ok", "ok2"):
        assert "result 2 toy smoke" in stream_text(nbformat.read(layout.executed(name), as_version=4))
        assert "result 2 toy smoke" in layout.run_log(name).read_text()
        assert f"== {name}: ok in" in proc.stderr
    assert "result 2" not in proc.stdout + proc.stderr  # page output stays in the logs
    assert "written by the kernel itself" in layout.run_log("ok2").read_text()
    assert "written by the kernel itself" not in proc.stdout + proc.stderr
    with layout.report.open() as f:
        statuses = {r["notebook"]: r["status"] for r in csv.DictReader(f)}
    assert statuses == {"boom": "failed", "ok": "ok", "ok2": "ok", book.TOTAL_ROW: "failed"}


KILLS_ITS_WORKER = '''\
# %% [markdown]
# # A page whose kernel kills the build's worker process running it (as the out-of-memory killer may)

# %% tags=["parameters"]
size = 1

# %%
import os
import signal
import time

os.kill(os.getppid(), signal.SIGKILL)
time.sleep(60)
'''


@pytest.mark.slow
def test_a_killed_worker_process_names_its_pages_and_fills_the_report(book_project):
    """Issue 28 case 1: a worker killed under --jobs 2 gave a bare BrokenProcessPool traceback naming no page, and
    the build report was not updated."""
    root = book_project({"killer": KILLS_ITS_WORKER, "ok": OK_NOTEBOOK, "later": OK_NOTEBOOK})
    proc = run_cli("run", "--profile", "smoke", "--root", str(root), "--jobs", "2")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ("notebook 'killer' was running when a worker process of the parallel build died (killed by a signal or "
            "out of memory; the pool then stops them all); rerun it with `python -m residual_lib.book run --only "
            "killer`") in proc.stderr
    assert "os.kill(os.getppid(), signal.SIGKILL)" in proc.stderr  # the cell that was running, marked in the page
    with book_layout.Layout(root).report.open() as f:
        statuses = {r["notebook"]: r["status"] for r in csv.DictReader(f)}
    assert statuses["killer"] == "failed" and statuses[book.TOTAL_ROW] == "failed"
    assert set(statuses) == {"killer", "ok", "later", book.TOTAL_ROW}
    assert book.executed_errors(book_layout.Layout(root), ["killer"]), "the half-run page is refused by the site build"


def test_longest_first_orders_by_the_last_report(book_project):
    layout = book_layout.Layout(book_project({"a": OK_NOTEBOOK, "b": OK_NOTEBOOK, "c": OK_NOTEBOOK}))
    assert book.longest_first(layout, ["a", "b", "c"]) == ["a", "b", "c"]  # no report: toc order
    records = [book.RunRecord(n, "smoke", "ok", t, None, "x", "now") for n, t in (("a", 1.0), ("b", 30.0))]
    book.write_report(layout.report, records, ["a", "b", "c"])
    assert book.longest_first(layout, ["a", "b", "c"]) == ["c", "b", "a"]  # never run first, then longest


def test_jobs_below_one_is_refused(book_project):
    layout = book_layout.Layout(book_project({"ok": OK_NOTEBOOK}))
    with pytest.raises(book_layout.BookError, match="jobs must be at least 1, got 0"):
        book.run(layout, "smoke", jobs=0)


TIMED_NOTEBOOK = '''\
# %% [markdown]
# # A page that says when it ran

# %% tags=["parameters"]
seconds = 0.0

# %%
import time

print("start", time.time())
time.sleep(seconds)
print("end", time.time())
'''


@pytest.mark.slow
def test_parallel_run_starts_summary_pages_after_every_other_page(book_project, monkeypatch):
    """The front page and the reproduction report read what the other pages leave behind: with --jobs they wait."""
    from types import SimpleNamespace

    import residual_lib.experiments as experiments

    root = book_project({"slow": TIMED_NOTEBOOK, "summary": TIMED_NOTEBOOK, "quick": TIMED_NOTEBOOK},
                        params={"slow": "seconds: 3.0\n"})
    summary_page = SimpleNamespace(SUMMARY=True, Params=SimpleNamespace(names=lambda: ["seconds"],
                                                                       from_dict=lambda values: values))
    monkeypatch.setattr(experiments, "experiment", lambda name: summary_page if name == "summary" else None)
    records = book.run(book_layout.Layout(root), "smoke", jobs=2)
    assert [r.notebook for r in records] == ["slow", "quick", "summary"] and {r.status for r in records} == {"ok"}
    times = {}
    for name in ("slow", "summary", "quick"):
        text = stream_text(nbformat.read(book_layout.Layout(root).executed(name), as_version=4))
        times[name] = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()}
    assert times["summary"]["start"] > max(times["slow"]["end"], times["quick"]["end"])
    assert times["quick"]["start"] < times["slow"]["end"]  # the other pages did run at once


TOY_READER = '''\
# %% [markdown]
# # A page that reads the toy model

# %% tags=["parameters"]
model = "toy-clip-smoke"

# %%
import time

print("start", time.time())
'''


@pytest.mark.slow
def test_parallel_run_trains_the_toy_model_beside_the_pages_that_do_not_read_it(book_project, tmp_artifacts,
                                                                                   monkeypatch):
    """`make book` no longer trains first: the training takes one worker, the pages that name no toy model run on
    the other, and a page that reads it starts only once the checkpoint is written."""
    import time
    from concurrent.futures import ProcessPoolExecutor

    from residual_lib.files import read_json

    submitted = {}
    submit = ProcessPoolExecutor.submit

    def spy(pool, fn, *args, **kwargs):
        submitted[args[1] if fn is book._run_logged else fn.__name__] = time.time()
        return submit(pool, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", spy)
    from residual_lib.toy.train import CONFIGS, is_current, output_dir
    from marker_job import MarkerJob

    root = book_project({"reader": TOY_READER, "free": TIMED_NOTEBOOK}, params={"free": "seconds: 1.0\n"})
    layout = book_layout.Layout(root)
    assert book.toy_training(layout, ["free"], "smoke", {}) == (None, []), "no page reads the toy model: no training"
    assert book.toy_training(layout, ["free", "reader"], "smoke", {}) == ("smoke", ["reader"])
    # the reader's training of another model (`early_training`): the free worker runs it before the free page
    early = MarkerJob(str(root / "early-ran"))
    monkeypatch.setattr(book, "early_training",
                        lambda layout, names, profile, overrides: [early] * (names == ["reader"]))
    records = book.run(layout, "smoke", jobs=2)
    assert {r.status for r in records} == {"ok"}
    out = output_dir("smoke")
    assert is_current(out, CONFIGS["smoke"]) and "trained" not in layout.run_log("reader").read_text()
    written = (out / "manifest.json").stat().st_mtime
    assert read_json(out / "manifest.json")["train_seconds"] > 0
    times = {n: {line.split()[0]: float(line.split()[1])
                 for line in stream_text(nbformat.read(layout.executed(n), as_version=4)).splitlines()}
             for n in ("reader", "free")}
    assert times["reader"]["start"] >= written, "the reader waited for the checkpoint"
    assert submitted["_train_logged"] <= submitted["free"] < written, "the free page went in while the model trained"
    assert submitted["reader"] >= written and times["free"]["start"] < times["reader"]["start"]
    assert layout.run_log(book.TOY_MODEL_LOG).is_file()
    ran = float((root / "early-ran").read_text())
    assert submitted["_train_logged"] <= submitted["_early_logged"] <= submitted["free"] and ran < written, \
        "the early job went in first, and ran while the model trained"
    assert layout.run_log(book.early_log(early)) == layout.run_log("early-page-net-task")
    assert book.toy_training(layout, ["free", "reader"], "smoke", {}) == (None, []), "a current checkpoint: no training"


def test_early_training_is_the_real_networks_section4_training_of_the_pages_given(tmp_artifacts):
    """What a worker left free by the toy training runs: the smoke profile's Section 4 pages train the random
    stand-in DINO on scikit-learn digits beside the toy CLIP; only the former needs no toy model."""
    layout = book_layout.Layout(REPO_ROOT)
    pages = ["fig05_tab02_residual_alignment", "tab01_coarse_unit_alignment", "fig02_intrinsic_dimension"]
    jobs = book.early_training(layout, pages, "smoke", {})
    assert [j.name for j in jobs] == ["train:fig05_tab02/standin-dino/sklearn-digits",
                                      "train:tab01/standin-dino/sklearn-digits"]
    assert dict(jobs[0].params)["threads"] == 1 and dict(jobs[0].params)["range_steps"] == 20
    assert book.early_training(layout, pages, "smoke", {"real_models": []}) == []


@pytest.mark.slow
def test_parallel_run_starts_a_page_after_the_pages_whose_caches_it_reads(book_project, monkeypatch):
    """The atlas reads the real-model page's caches (`AFTER`): it starts once that page is done instead of holding
    a worker on its cache locks, and the other pages fill the second worker meanwhile."""
    from types import SimpleNamespace

    import residual_lib.experiments as experiments

    root = book_project({"reader": TIMED_NOTEBOOK, "slow": TIMED_NOTEBOOK, "quick": TIMED_NOTEBOOK},
                        params={"slow": "seconds: 3.0\n"})
    reader = SimpleNamespace(AFTER=("slow", "absent"), Params=SimpleNamespace(names=lambda: ["seconds"],
                                                                               from_dict=lambda values: values))
    monkeypatch.setattr(experiments, "experiment", lambda name: reader if name == "reader" else None)
    records = book.run(book_layout.Layout(root), "smoke", jobs=2)
    assert {r.status for r in records} == {"ok"}
    times = {n: {line.split()[0]: float(line.split()[1])
                 for line in stream_text(nbformat.read(book_layout.Layout(root).executed(n), as_version=4)).splitlines()}
             for n in ("reader", "slow", "quick")}
    assert times["reader"]["start"] > times["slow"]["end"], "the reader waited for the page it reads"
    assert times["quick"]["start"] < times["slow"]["end"], "the first in the toc did not hold a worker idle"

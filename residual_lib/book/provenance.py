"""Where a page's numbers came from: profile, parameters, commit, library version, machine, runtime.

The runner inserts a cell calling `show(...)` after each notebook's parameters; the cell displays the
record and carries it as output metadata, so the runner can add the measured runtime and peak memory
once the notebook has finished (the kernel cannot know its own total runtime).
"""

import html
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

from residual_lib.version import __version__
from residual_lib.paths import REPO_ROOT

METADATA_KEY = "residual_provenance"
NOT_MEASURED = "measured by the runner after execution"


def git_commit(root=REPO_ROOT) -> str:
    """Short hash of `root`'s HEAD commit; 'unknown' outside git. Uncommitted changes: `changed_files`."""
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def changed_files(root=REPO_ROOT) -> list[str]:
    """Tracked files whose working copy differs from HEAD (a build from a dirty checkout); [] outside git."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(line[3:].split(" -> ")[-1] for line in out.splitlines() if line.strip())


def describe_commit(commit: str, changed: list[str], shown: int = 8) -> str:
    """'<hash>', or '<hash> with uncommitted changes to N files: a, b, ...' (the first `shown` named)."""
    if not changed:
        return commit
    names = ", ".join(changed[:shown]) + (f" and {len(changed) - shown} more" if len(changed) > shown else "")
    return f"{commit} with uncommitted changes to {len(changed)} file{'s' * (len(changed) != 1)}: {names}"


def package_versions(names: list[str]) -> dict[str, str]:
    """Installed version of each distribution in `names` ('not installed' when absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def usable_cpus() -> int:
    """CPU cores this process may run on (the affinity mask, which containers narrow), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine(device: str = "auto") -> dict[str, Any]:
    """The machine as a notebook sees it: Python, OS, CPUs, whether CUDA is visible, the resolved device."""
    import torch

    from residual_lib.device import resolve_device

    resolved = resolve_device(device)
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "gpus": ", ".join(gpus) if gpus else "none",
        "device": str(resolved),
    }


def record(profile: str, notebook: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Provenance of one notebook run, without the runtime fields the runner adds afterwards."""
    device = machine(str(parameters.get("device", "auto")))
    return {
        "notebook": notebook,
        "profile": profile,
        "parameters": {k: repr(v) for k, v in parameters.items()},
        "commit": git_commit(),
        "changed": changed_files(),
        "residual_lib": __version__,
        "device": device["device"],
        "gpus": device["gpus"],
        "cpus": device["cpus"],
        "runtime_s": None,
        "peak_rss_mib": None,
    }


def _fmt_runtime(rec: dict[str, Any]) -> str:
    if rec.get("runtime_s") is None:
        return NOT_MEASURED
    text = f"{rec['runtime_s']:.1f} s"
    if rec.get("peak_rss_mib") is not None:
        text += f", peak memory {rec['peak_rss_mib']:.0f} MiB (kernel RSS)"
    return text


def render_html(rec: dict[str, Any]) -> str:
    """The provenance block as HTML (styled by book/_static/provenance.css)."""
    rows = [
        ("Profile", rec["profile"]),
        ("Git commit", describe_commit(rec["commit"], rec.get("changed", []))),
        ("residual_lib", rec["residual_lib"]),
        ("Device", f"{rec['device']} ({rec['cpus']} CPU cores; GPUs: {rec['gpus']})"),
        ("Runtime", _fmt_runtime(rec)),
    ]
    params = ", ".join(f"<code>{html.escape(k)}={html.escape(v)}</code>" for k, v in rec["parameters"].items())
    rows.append(("Parameters", params or "none"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v if k == 'Parameters' else html.escape(str(v))}</td></tr>"
                   for k, v in rows)
    return (f'<div class="residual-provenance"><p class="residual-provenance-title">Provenance of this page '
            f'(notebook <code>{html.escape(rec["notebook"])}</code>)</p><table>{body}</table></div>')


def render_text(rec: dict[str, Any]) -> str:
    """The provenance block as plain text (for consoles and text-only viewers)."""
    params = ", ".join(f"{k}={v}" for k, v in rec["parameters"].items()) or "none"
    commit = describe_commit(rec["commit"], rec.get("changed", []))
    return (f"Provenance: notebook {rec['notebook']} | profile {rec['profile']} | commit {commit} | "
            f"residual_lib {rec['residual_lib']} | device {rec['device']} ({rec['cpus']} CPUs, GPUs: {rec['gpus']}) "
            f"| runtime {_fmt_runtime(rec)} | parameters {params}")


def bundle(rec: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """(data, metadata) of the display output that carries `rec`."""
    return {"text/html": render_html(rec), "text/plain": render_text(rec)}, {METADATA_KEY: rec}


def show(profile: str, notebook: str, parameters: dict[str, Any]) -> None:
    """Display the provenance block of the running notebook (called by the cell the runner inserts)."""
    from IPython.display import publish_display_data

    data, metadata = bundle(record(profile, notebook, parameters))
    publish_display_data(data=data, metadata=metadata)

"""`.github/workflows/submission.yml`, run where it can be without GitHub: the `changes` job's shell step
(which finds the changed submission folders and refuses any name that is not a slug before a later step's
shell sees it) runs here on a throw-away git repository with a pull request's folder names, malicious ones
included; and no `run:` script interpolates a `${{ }}` expression (GitHub would paste its value into the
script before the shell parses it)."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "submission.yml"


def _jobs() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def _run_changes_step(tmp_path: Path, folder: str) -> tuple[subprocess.CompletedProcess, str]:
    """The `changes` step's script on a repository whose HEAD adds `submissions/<folder>/submission.toml`."""
    script = next(s["run"] for s in _jobs()["changes"]["steps"] if s.get("id") == "changed")
    repo = tmp_path / "repo"
    (repo / "submissions").mkdir(parents=True)
    (repo / "submissions" / ".keep").write_text("")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    base = _git(repo, "rev-parse", "HEAD")
    (repo / "submissions" / folder).mkdir()
    (repo / "submissions" / folder / "submission.toml").write_text("name = 'x'\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "pull request")
    out = tmp_path / "github_output"
    out.write_text("")
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "BASE": base, "GITHUB_OUTPUT": str(out)})
    return proc, out.read_text()


@pytest.mark.parametrize("folder", ["x$(touch${IFS}gha_injected)", "x`touch gha_injected`", "x;touch gha_injected",
                                    "a b", "Upper"])
def test_changes_step_refuses_a_folder_name_that_is_not_a_slug(folder, tmp_path):
    proc, output = _run_changes_step(tmp_path, folder)
    assert proc.returncode == 1 and "::error::submissions/ folder name is not a valid slug" in proc.stdout
    assert "slugs=" not in output
    assert not list(tmp_path.rglob("gha_injected"))


def test_changes_step_passes_a_valid_slug_on(tmp_path):
    proc, output = _run_changes_step(tmp_path, "my_method")
    assert proc.returncode == 0, proc.stderr
    assert output.strip() == "slugs= my_method"


def test_no_run_script_interpolates_an_expression():
    for name, job in _jobs().items():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), (name, step.get("name"))

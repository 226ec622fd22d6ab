"""The README's Python API examples run as written (in a temporary folder)."""
import os
import re

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def _run_example(heading, folder, monkeypatch):
    """Execute the first ```python block after ``heading`` inside ``folder``."""
    text = open(README).read()
    code = re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1)
    monkeypatch.chdir(folder)
    exec(compile(code, "README.md", "exec"), {})


def test_readme_starts_with_the_two_commands():
    lines = [l.strip() for l in open(README).read().splitlines() if l.strip().startswith("make ")]
    assert lines[:2] == ["make demo", "make test"]


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    _run_example("### Python API: pretrain", tmp_path, monkeypatch)
    assert os.path.exists(tmp_path / "runs" / "api" / "pre" / "encoder.keras")
    assert "(None, 64)" in capsys.readouterr().out


def test_readme_explain_example_runs(tmp_path, monkeypatch, capsys):
    _run_example("### Python API: explain", tmp_path, monkeypatch)
    assert (tmp_path / "ecg0.png").stat().st_size > 50_000 and (tmp_path / "ecg0.svg").exists()
    assert "'QRS'" in capsys.readouterr().out

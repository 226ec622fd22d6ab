"""The README's Python API example runs as written (in a temporary folder)."""
import os
import re

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_readme_starts_with_the_two_commands():
    lines = [l.strip() for l in open(README).read().splitlines() if l.strip().startswith("make ")]
    assert lines[:2] == ["make demo", "make test"]


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    text = open(README).read()
    section = text[text.index("### Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert os.path.exists(tmp_path / "runs" / "api" / "pre" / "encoder.keras")
    out = capsys.readouterr().out
    assert "(None, 64)" in out


def test_readme_explain_example_runs(tmp_path, monkeypatch, capsys):
    text = open(README).read()
    section = text[text.index("### Python API: explain"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "ecg0.png").stat().st_size > 50_000 and (tmp_path / "ecg0.svg").exists()
    assert "'QRS'" in capsys.readouterr().out

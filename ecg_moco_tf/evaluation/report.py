"""Markdown report of a reproduction: Table 1 (splits), Table 2 (AUCs with CIs), DeLong tests,
operating points, learning-rate sweeps and figures."""
import os

LABELS = {"baseline_unpretrained": "Baseline (unpretrained)",
          "baseline_full_labels": "Baseline (full labels)", "proposed": "Proposed"}


def _f(x, nd=4):
    return "n/a" if x is None or x != x else f"{x:.{nd}f}"


def _p(p):
    """A p-value as printed: 3 decimals, '< 0.001' below that."""
    return "n/a" if p is None or p != p else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def table2(summary, tests, encoder_note=None):
    """Markdown Table 2: test AUC [95 % patient-bootstrap CI], and vs proposed the paired AUC
    difference (proposed - baseline) with its paired patient-bootstrap CI and DeLong's p. ``encoder_note``: why the proposed row's encoder is marked (its
    epoch was chosen with labels, or its provenance is unknown)."""
    lines = ["| model | test AUC | 95 % CI (patient bootstrap) | proposed - model [95 % CI] | "
             "DeLong p vs proposed | test ECGs (patients, positives) |",
             "|---|---|---|---|---|---|"]
    for name in ("baseline_unpretrained", "baseline_full_labels", "proposed"):
        if name not in summary:
            continue
        s = summary[name]
        t = tests.get(f"proposed_vs_{name}")
        d = (t or {}).get("paired_bootstrap")
        diff = (f"{d['difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" if d
                else "-")
        mark = " *" if name == "proposed" and encoder_note else ""
        lines.append(f"| {LABELS[name]}{mark} | {_f(s['auc'])} | [{_f(s['auc_ci_low'])}, "
                     f"{_f(s['auc_ci_high'])}] | {diff} | {_p(t['p_value']) if t else '-'} | "
                     f"{s['n_ecgs']} ({s['n_patients']}, {s['n_positive']}) |")
    if encoder_note:
        lines += ["", f"\\* {encoder_note}"]
    return "\n".join(lines)


def write_report(out_dir, split_table, summary, tests, sweeps, figures, settings, notes=(),
                 extra=(), encoder_note=None, title="ecg-moco-tf reproduction report",
                 splits_title="Data splits (paper Table 1)", paper_design=True):
    """Write ``report.md`` (``extra``: more Markdown lines before the settings); returns its
    path. Without ``summary`` (no experiment run): splits, figures and ``extra`` only.
    ``paper_design``: the splits are the paper's (a test prevalence above 0.3 is called
    enriched by it)."""
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes] + [""]
    lines += [f"## {splits_title}", "", split_table.to_markdown(), ""]
    if summary:
        lines += _results_lines(summary, tests, sweeps, encoder_note, paper_design)
    lines += ["## Figures", ""] + [f"![{k}]({os.path.basename(v)})" for k, v in figures.items()]
    lines += [""] + list(extra)
    lines += ["", "## Settings", "", "```", str(settings), "```", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def _results_lines(summary, tests, sweeps, encoder_note, paper_design=True):
    """Table 2, the operating points and the learning-rate sweeps."""
    op_key = next(k for k in next(iter(summary.values())) if k.startswith("at_sensitivity"))
    lines = []
    heading = "## Test AUC (paper Table 2)" if len(summary) > 1 else "## Test AUC"
    lines += [heading, "", table2(summary, tests, encoder_note), ""]
    if tests:
        lines += ["Paired difference: every bootstrap resample of patients scores both "
                  "models; DeLong: two-sided test of equal AUCs on the same test ECGs, its "
                  "variance clustered by patient (Obuchowski 1997).", ""]
    first = next(iter(summary.values()))
    chosen = ", ".join(f"{LABELS.get(n, n)}: {s.get('chosen_on', 'valid2')}"
                       for n, s in summary.items())
    prev = first[op_key].get("prevalence")
    pop = first[op_key].get("population_prevalence")
    lines += ["## Operating points", "",
              f"Thresholds chosen on each model's validation predictions ({chosen}), "
              "applied to test. PPV and NPV at "
              f"the test split's prevalence ({_f(prev, 3)}"
              + (", enriched by the paper design" if paper_design and prev is not None and prev > 0.3
                 else "")
              + ")" + (f" and at the population prevalence {pop:g} (`--population_prevalence`)"
                       if pop is not None else
                       "; `--population_prevalence` adds them at your population's") + ".", "",
              "| model | threshold rule | threshold | sensitivity | specificity | "
              "PPV (test prev.) | NPV (test prev.) |"
              + (" PPV (population) | NPV (population) |" if pop is not None else "")
              + " Brier |", "|---|---|---|---|---|---|---|---|" + ("---|---|" if pop is not None
                                                                  else "")]
    for name, s in summary.items():
        for rule, key in (("Youden", "youden"), (op_key.replace("at_", "").replace("_", " "),
                                                  op_key)):
            m = s[key]
            popcols = (f"{_f(m['ppv_at_population'], 3)} | {_f(m['npv_at_population'], 3)} | "
                       if pop is not None else "")
            lines.append(f"| {LABELS.get(name, name)} | {rule} | {_f(m['threshold'], 3)} | "
                         f"{_f(m['sensitivity'], 3)} | {_f(m['specificity'], 3)} | "
                         f"{_f(m['ppv'], 3)} | {_f(m['npv'], 3)} | {popcols}"
                         f"{_f(s['brier'], 3)} |")
    if sweeps:
        lines += ["", "## Learning-rate sweeps (lowest validation loss kept)", ""]
    for name, sw in sweeps.items():
        lines += [f"**{LABELS.get(name, name)}**", "", sw.to_markdown(index=False), ""]
    return lines + [""]


def publish(run_dir, out_dir, overwrite=False):
    """Copy a run's reports to a documentation folder: every Markdown file under ``run_dir``
    (``report.md``, the explanation summaries), ``results.json`` and every file those pages
    link or show, keeping the layout. Nothing is rewritten, so the page is the run's own
    report. Returns the copied paths (relative). ``FileNotFoundError`` when the run has no
    ``report.md`` or a page links a file the run does not have; ``FileExistsError`` when
    ``out_dir`` holds files and ``overwrite`` is False, or holds files but no ``report.md``
    (it is not a published run: replacing it would delete them). Files the pages do not link
    are not copied."""
    import re
    import shutil

    run_dir = os.path.abspath(run_dir)
    out_abs = os.path.abspath(out_dir)
    if os.path.commonpath([run_dir, out_abs]) in (run_dir, out_abs):
        raise ValueError(f"{out_dir} is the run folder, inside it or above it: publish "
                         "to a folder of its own, e.g. docs/results/NAME")
    if not os.path.isfile(os.path.join(run_dir, "report.md")):
        raise FileNotFoundError(f"{run_dir} has no report.md: give the --out folder of a "
                                "finished reproduce or finetune run")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty: choose another folder, or pass "
                                  "--overwrite to replace it")
        if not os.path.isfile(os.path.join(out_dir, "report.md")):
            raise FileExistsError(f"{out_dir} holds no published report (report.md), so "
                                  "--overwrite would delete other files: give the folder of "
                                  "one published run, e.g. docs/results/NAME")
    pages = sorted(os.path.relpath(os.path.join(d, f), run_dir)
                   for d, _, names in os.walk(run_dir) for f in names if f.endswith(".md"))
    wanted = set(pages) | ({"results.json"} & set(os.listdir(run_dir)))
    for page in pages:
        text = open(os.path.join(run_dir, page)).read()
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://|#|mailto:", link):
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(page), link.split("#")[0]))
            if target.startswith("..") or not os.path.isfile(os.path.join(run_dir, target)):
                raise FileNotFoundError(f"{os.path.join(run_dir, page)} links {link}, which "
                                        f"is not a file of the run folder {run_dir}: the run "
                                        "is incomplete (run it again)")
            wanted.add(target)
    if os.path.isdir(out_dir) and overwrite:
        shutil.rmtree(out_dir)
    for rel in sorted(wanted):
        os.makedirs(os.path.dirname(os.path.join(out_dir, rel)) or out_dir, exist_ok=True)
        shutil.copy2(os.path.join(run_dir, rel), os.path.join(out_dir, rel))
    return sorted(wanted)


def table2_of_run(folder):
    """Table 2 of a run (or published) folder, from its ``results.json``: what the README's
    excerpts show, checked by the tests against the published results; None without one."""
    import json

    path = os.path.join(folder, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        res = json.load(f)
    return table2(res["summary"], res.get("delong", {})) if res.get("summary") else None

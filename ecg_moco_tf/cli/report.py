"""Publish a run's generated reports to a documentation folder (e.g. docs/results/NAME).

Example: ecg-moco report --run=runs/demo --out=docs/results/demo --overwrite
Copies report.md, every other Markdown page of the run (the explanation summaries),
results.json and every figure or table those pages link, unchanged: the page shows the
numbers the run's own report code wrote, with its command, date and commit. A page linking a
file the run does not have is an error (exit 2) and nothing is copied. The run's Table 2 is
printed at the end (the README's excerpts are this table; the tests compare them).
"""
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "Output folder of a finished reproduce or finetune run.",
                    required=True)
flags.DEFINE_string("out", None, "Folder to write, e.g. docs/results/demo.", required=True)
flags.DEFINE_bool("overwrite", False, "Replace the files of a non-empty --out.")


def main(argv):
    del argv
    from ecg_moco_tf.evaluation.report import publish, table2_of_run

    files = publish(FLAGS.run, FLAGS.out, FLAGS.overwrite)
    print(f"published {len(files)} file(s) of {FLAGS.run} to {FLAGS.out}: "
          f"{', '.join(f for f in files if f.endswith('.md'))}")
    table = table2_of_run(FLAGS.out)
    if table:
        print(f"its Table 2 (for a README excerpt):\n{table}")

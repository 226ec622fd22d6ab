"""Command-line apps, one absl app per command, dispatched by ``ecg-moco <command>``."""

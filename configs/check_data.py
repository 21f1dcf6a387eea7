"""Check the CodeIt data: run every ground-truth training program on its examples, and load
any mutated files given (``--config.mutated_files=A,B``) as a CodeIt run does."""

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = ConfigDict()
    config.experiment = "check_data"
    config.workdir = "runs/check_data"
    config.data_dir = ""  # empty: $CODEIT_DATA or ../shared/codeit-data
    config.max_state_size = 1000  # CodeIt's executor rule; None runs the programs plainly
    # Comma-separated mutated collection files to load as a CodeIt run does (report: loaded and
    # skipped counts per reason); max_mutated_tasks and n_examples as configs/codeit.py.
    config.mutated_files = ""
    config.max_mutated_tasks = 19_200
    config.n_examples = 10
    config.lock()
    return config

"""Check the CodeIt data: run every ground-truth training program on its examples."""

from ml_collections import ConfigDict


def get_config() -> ConfigDict:
    config = ConfigDict()
    config.experiment = "check_data"
    config.workdir = "runs/check_data"
    config.data_dir = ""  # empty: $CODEIT_DATA or ../shared/codeit-data
    config.max_state_size = 1000  # CodeIt's executor rule; None runs the programs plainly
    config.lock()
    return config

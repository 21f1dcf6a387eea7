"""Execution: run DSL programs on grids in a pool of CPU worker processes.

Stage 3 (programs -> execution -> replay). The sandbox bounds each run in time, memory and
state size and returns one `Outcome` per (program, input); a worker that dies or hangs is
replaced and only its run is blamed.

- ``sandbox``: `Sandbox` (the process pool and its watchdog), `Outcome`, `run_in_process`.
- ``worker``: the worker process's loop (imports no JAX, starts fast).
- ``run``: one program on one input under a time budget (`Executor`, error kinds, records).
- ``line_sharing``: programs that share their first lines run those lines once (`match_group`).
- ``shared``: on a multi-host run every host executes its share (`process_executor`).
"""

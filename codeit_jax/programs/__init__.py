"""Programs: DSL program text to a validated, compiled program, and programs about programs.

Stage 2 of CodeIt's data flow (dsl -> programs -> execution). Model output is parsed by a closed
grammar, never `eval`/`exec`-ed.

- ``program``: `parse` (text -> `Program`), `Program.run`, the state-size rule.
- ``types``: type inference over the DSL's union types; concrete primitive signatures.
- ``mutate``: CodeIt's depth-one, type-aware mutation operator (`Mutator`).
- ``random_programs``: type-directed random programs (`RandomProgramSampler`).
"""

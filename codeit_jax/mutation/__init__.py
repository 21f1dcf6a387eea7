"""CodeIt's mutation baseline: type inference, program mutation, random programs.

``types`` resolves the DSL's union types per program and tabulates the concrete signatures of
the primitives; ``mutate`` is the depth-one mutation operator; ``random_programs`` samples
type-directed programs; ``baseline`` runs generation and evaluation through the sandbox.
"""

"""The matrix language: what to run.

A YAML file becomes a `Plan` of jobs here — loading with positions, every schema, dotted
paths, expansion and selection — with only the standard library, pydantic and yaml. How
and where the jobs run is `ftmatrix.runner`'s business; nothing here starts a process.
"""

"""`python -m ftmatrix ...`: the same CLI as the `ftmatrix` command."""

from ftmatrix.cli import app

app(prog_name="ftmatrix")

"""`python -m ftmatrix.runner.server`: where the warm job server lived before
launchers/. Runners of older versions start the server this way; it runs the one in
`ftmatrix.runner.launchers.server`."""

from __future__ import annotations

if __name__ == "__main__":
    from ftmatrix.runner.launchers.server import main

    main()

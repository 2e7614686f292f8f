"""Launchers: how a job folder becomes a running job process.

process.py     what they all share: the handle the runner polls and stops, the one
               stop ladder (SIGINT, SIGTERM, SIGKILL), liveness that survives PID
               reuse, the log header, the preamble a forked job runs before training
spawn.py       a fresh interpreter per job (`python -m ftmatrix.trainers JOB_DIR`)
forkserver.py  jobs forked from a fork server this run starts (imports torch once)
warm.py        jobs forked by a warm server (`ftmatrix server start`): the runner's side
server.py      the warm server process itself (`python -m ftmatrix.runner.launchers.server`)
choice.py      which of them `--launcher auto|server|forkserver|spawn` gets
"""

"""A plain PyTorch script run by ftmatrix (matrices/own-script.yaml): an MLP on sklearn's
digits, on the CPU, in seconds. It reads its settings from the job's config, reports
each epoch and the test metrics through `ftmatrix.job`, saves a checkpoint after every
epoch and, when ftmatrix starts it again after a kill, resumes from that checkpoint.

Run by hand (outside ftmatrix) it needs FTMATRIX_CONFIG etc.; `ftmatrix run` sets them.
"""

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from ftmatrix import job

cfg = job.config()
train, params = cfg["train"], cfg["params"]
torch.manual_seed(train["seed"])
x, y = load_digits(return_X_y=True)
x = torch.tensor(x / 16.0, dtype=torch.float32)
y = torch.tensor(y)
idx = torch.arange(len(y)).numpy()
rest, test = train_test_split(idx, test_size=0.2, random_state=0, stratify=y.numpy())
fit, val = train_test_split(rest, test_size=0.125, random_state=0, stratify=y.numpy()[rest])

model = nn.Sequential(nn.Linear(64, params["width"]), nn.ReLU(), nn.Linear(params["width"], 10))
optimizer = torch.optim.SGD(model.parameters(), lr=train["lr"], momentum=0.9)
state_file = job.checkpoint_dir() / "state.pt"
start = 1
if job.resuming() and state_file.exists():
    state = torch.load(state_file)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    start = state["epoch"] + 1


def evaluate(rows):
    with torch.no_grad():
        logits = model(x[rows])
        loss = nn.functional.cross_entropy(logits, y[rows]).item()
        return loss, (logits.argmax(1) == y[rows]).float().mean().item()


for epoch in range(start, train["epochs"] + 1):
    order = torch.tensor(fit)[torch.randperm(len(fit))]
    for batch in order.split(train["batch_size"]):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    train_loss, train_acc = evaluate(fit)
    val_loss, val_acc = evaluate(val)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": epoch,
        },
        state_file,
    )
    job.log_epoch(
        epoch,
        train_loss=train_loss,
        train_accuracy=train_acc,
        val_loss=val_loss,
        val_accuracy=val_acc,
    )
    if job.should_stop():  # Ctrl-C, --timeout or the search's pruner: the checkpoint is saved
        raise SystemExit(130)

test_loss, test_acc = evaluate(test)
job.log_test(loss=test_loss, accuracy=test_acc)

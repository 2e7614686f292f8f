"""The job process: data, models, LoRA, losses, the training loop. The only torch user."""
